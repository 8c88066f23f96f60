"""Baselines of the seeds: timm ResNet / ViT / Swin backbones, or any timm architecture, with a
regression head."""

from __future__ import annotations

import difflib
import re

import timm
import torch
import torch.nn as nn

from iqa.models.base import ConfigurationError, IQAModel
from iqa.models.baselines.vit_tuners import add_adapters, add_deep_prompts, add_lora
from iqa.models.pretrained import VIT_NAMES, load_pretrained, resolve_pretrained, timm_normalization
from iqa.registry import register_model

SWIN_NAMES = {size: f"swin_{size}_patch4_window7_224" for size in ("tiny", "small", "base")}


def _choose(table: dict[str, str], size: str, key: str) -> str:
    if size not in table:
        raise ConfigurationError(f"{key}={size!r}: choose one of {', '.join(table)}")
    return table[size]


class TimmRegressor(IQAModel):
    """A timm backbone (classifier removed) → dropout → linear → one score per image.

    Args:
        arch: timm architecture name.
        pretrained: ``None``/``False`` (random init), ``True`` (timm's default tag), a timm tag
            found in the local HF cache, a local weights file, or ``efficientnet-lite0|1|2``
            (:func:`iqa.models.pretrained.resolve_pretrained`).
        tuning: ``full`` trains everything; ``linear_probe`` freezes the backbone (kept
            in eval mode, so BatchNorm statistics do not move) and trains the head; subclasses
            may offer tuners inside the frozen backbone (:attr:`tunings`).
        head_dropout: dropout before the head.
        fixed_input_size: the side the backbone requires (ViT/Swin), else ``None``.
        timm_kwargs: extra timm constructor arguments (e.g. ``img_size``).
    """

    tunings: tuple[str, ...] = ("full", "linear_probe")

    def __init__(self, arch: str, pretrained: str | bool | None = None, tuning: str = "full",
                 head_dropout: float = 0.0, fixed_input_size: int | None = None, **timm_kwargs) -> None:
        if tuning not in self.tunings:
            raise ConfigurationError(f"model.tuning={tuning!r}: {type(self).__name__} offers {', '.join(self.tunings)}")
        pretrained = resolve_pretrained(arch, pretrained)
        super().__init__(*timm_normalization(arch, pretrained), fixed_input_size)
        backbone = timm.create_model(arch, pretrained=False, num_classes=0, **timm_kwargs)
        if pretrained:
            load_pretrained(backbone, pretrained, arch)
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(backbone.num_features, 1))
        # A fresh head outputs zero: a random one (timm's 1-output EfficientNet head is uniform(-1, 1))
        # starts at scores of ~40 and wrecks fine-tuning (SRCC 0.14 vs 0.86 on ~1,000 real photos).
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.frozen_backbone = tuning != "full"
        if self.frozen_backbone:
            self.backbone.requires_grad_(False)

    def frozen_parts(self) -> list[nn.Module]:
        return [self.backbone] if self.frozen_backbone else []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)).squeeze(-1)


@register_model("timm")
class TimmIQA(TimmRegressor):
    """Any timm architecture ``name`` (``timm.list_models()``) with the regression head.

    ``pretrained`` as in :class:`TimmRegressor`; normalisation follows timm's pretrained config of
    the architecture (mean = std = 0.5 for ``tf_efficientnet_lite*``). Architectures of a fixed
    input size (timm's ``fixed_input_size``, e.g. ViT) require square ``img_size`` inputs (timm's
    default size when ``None``); ``timm_kwargs`` go to ``timm.create_model``.
    """

    def __init__(self, name: str = "tf_efficientnet_lite0", img_size: int | None = None, **kwargs) -> None:
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            family = name.rsplit("_", 1)[0] if "_" in name else re.match("[A-Za-z]*", name).group().lower()
            raise ConfigurationError(f"model.name={name!r} is not a timm architecture (close: {close}); list the "
                                     f"names with timm.list_models('{family}*')")
        super().__init__(name, img_size=img_size, **kwargs)
        config = self.backbone.pretrained_cfg
        if config.get("fixed_input_size"):
            self.fixed_input_size = int(img_size if img_size is not None else config["input_size"][-1])


@register_model("resnet")
class ResNetIQA(TimmRegressor):
    """ResNet-``depth`` (18/50/101/152); any input size."""

    def __init__(self, depth: int = 50, **kwargs) -> None:
        if depth not in (18, 34, 50, 101, 152):
            raise ConfigurationError(f"model.depth must be 18, 34, 50, 101 or 152, got {depth}")
        super().__init__(f"resnet{depth}", **kwargs)


@register_model("vit")
class ViTIQA(TimmRegressor):
    """ViT-T/S/B, patch 16; needs ``img_size`` square inputs (224 by default).

    Besides ``full`` and ``linear_probe``, ``tuning`` may add a tuner to the frozen ViT (LoDa
    Table 6, :mod:`iqa.models.baselines.vit_tuners`): ``adapter`` (bottleneck ``adapter_dim``),
    ``lora`` (rank ``lora_rank``, scale ``lora_alpha / lora_rank``, on qkv), ``vpt``
    (``vpt_tokens`` prompt tokens per block); the tuner and the head train.
    """

    tunings = ("full", "linear_probe", "adapter", "lora", "vpt")

    def __init__(self, size: str = "base", img_size: int = 224, tuning: str = "full", adapter_dim: int = 64,
                 lora_rank: int = 8, lora_alpha: float = 8.0, vpt_tokens: int = 10, **kwargs) -> None:
        super().__init__(_choose(VIT_NAMES, size, "model.size"), img_size=img_size, fixed_input_size=img_size,
                         tuning=tuning, **kwargs)
        tuners = {"adapter": lambda: add_adapters(self.backbone, adapter_dim),
                  "lora": lambda: add_lora(self.backbone, lora_rank, lora_alpha),
                  "vpt": lambda: add_deep_prompts(self.backbone, vpt_tokens)}
        if tuning in tuners:
            for parameter in tuners[tuning]():
                parameter.requires_grad_(True)


@register_model("swin")
class SwinIQA(TimmRegressor):
    """Swin-T/S/B, patch 4, window 7; needs ``img_size`` square inputs (224 by default)."""

    def __init__(self, size: str = "tiny", img_size: int = 224, **kwargs) -> None:
        super().__init__(_choose(SWIN_NAMES, size, "model.size"), img_size=img_size, fixed_input_size=img_size,
                         **kwargs)


for _depth in (18, 50, 101, 152):
    register_model(f"resnet{_depth}")(lambda depth=_depth, **kwargs: ResNetIQA(depth=depth, **kwargs))
