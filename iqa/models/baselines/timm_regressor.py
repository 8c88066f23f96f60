"""Baselines of the seeds: timm ResNet / ViT / Swin backbones with a regression head."""

from __future__ import annotations

import timm
import torch
import torch.nn as nn

from iqa.models.base import IQAModel
from iqa.models.pretrained import load_pretrained, timm_normalisation
from iqa.registry import register_model

VIT_NAMES = {size: f"vit_{size}_patch16_224" for size in ("tiny", "small", "base")}
SWIN_NAMES = {size: f"swin_{size}_patch4_window7_224" for size in ("tiny", "small", "base")}


def _choose(table: dict[str, str], size: str, key: str) -> str:
    if size not in table:
        raise ValueError(f"{key}={size!r}: choose one of {', '.join(table)}")
    return table[size]


class TimmRegressor(IQAModel):
    """A timm backbone (classifier removed) → dropout → linear → one score per image.

    Args:
        arch: timm architecture name.
        pretrained: ``None`` (random init), a timm tag found in the local HF cache, or a
            local weights file.
        tuning: ``full`` trains everything; ``linear_probe`` freezes the backbone (kept
            in eval mode, so BatchNorm statistics do not move) and trains the head.
        head_dropout: dropout before the head.
        fixed_input_size: the side the backbone requires (ViT/Swin), else ``None``.
        timm_kwargs: extra timm constructor arguments (e.g. ``img_size``).
    """

    def __init__(self, arch: str, pretrained: str | None = None, tuning: str = "full", head_dropout: float = 0.0,
                 fixed_input_size: int | None = None, **timm_kwargs) -> None:
        if tuning not in ("full", "linear_probe"):
            raise ValueError(f"model.tuning must be 'full' or 'linear_probe', got {tuning!r}")
        super().__init__(*timm_normalisation(arch, pretrained), fixed_input_size)
        backbone = timm.create_model(arch, pretrained=False, num_classes=0, **timm_kwargs)
        if pretrained:
            load_pretrained(backbone, pretrained, arch)
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(backbone.num_features, 1))
        self.linear_probe = tuning == "linear_probe"
        if self.linear_probe:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> TimmRegressor:
        super().train(mode)
        if self.linear_probe:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)).squeeze(-1)


@register_model("resnet")
class ResNetIQA(TimmRegressor):
    """ResNet-``depth`` (18/50/101/152); any input size."""

    def __init__(self, depth: int = 50, **kwargs) -> None:
        if depth not in (18, 34, 50, 101, 152):
            raise ValueError(f"model.depth must be 18, 34, 50, 101 or 152, got {depth}")
        super().__init__(f"resnet{depth}", **kwargs)


@register_model("vit")
class ViTIQA(TimmRegressor):
    """ViT-T/S/B, patch 16; needs ``img_size`` square inputs (224 by default)."""

    def __init__(self, size: str = "base", img_size: int = 224, **kwargs) -> None:
        super().__init__(_choose(VIT_NAMES, size, "model.size"), img_size=img_size, fixed_input_size=img_size,
                         **kwargs)


@register_model("swin")
class SwinIQA(TimmRegressor):
    """Swin-T/S/B, patch 4, window 7; needs ``img_size`` square inputs (224 by default)."""

    def __init__(self, size: str = "tiny", img_size: int = 224, **kwargs) -> None:
        super().__init__(_choose(SWIN_NAMES, size, "model.size"), img_size=img_size, fixed_input_size=img_size,
                         **kwargs)


for _depth in (18, 50, 101, 152):
    register_model(f"resnet{_depth}")(lambda depth=_depth, **kwargs: ResNetIQA(depth=depth, **kwargs))
