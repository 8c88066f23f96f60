"""QMamba and LQMamba (Guan et al., "QMamba: On First Exploration of Vision Mamba for Image
Quality Assessment"; the code is not public).

QMamba is VMamba v2 (:mod:`iqa.models.backbones.vmamba`) with a one-output regression head
(Sec. 3.1.1, Table 1); LQMamba replaces the cross scan by a local window scan (Sec. 3.1.2).
What the paper leaves open, and how the local scan was inferred from its parameter counts,
is in docs/qmamba.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch

from iqa.errors import ConfigurationError
from iqa.models.backbones.vmamba import VSSM, StageHook
from iqa.models.base import IMAGENET_MEAN, IMAGENET_STD, IQAModel, mark_weights_loaded
from iqa.models.pretrained import PretrainedWeightsError, is_weights_file
from iqa.models.weights import KeyDiff, WeightsMismatchError, read_state_dict, read_trained_weights
from iqa.registry import register_model

_logger = logging.getLogger(__name__)

# Table 1: depths and width of QMamba-T/S/B (d_state 1, ssm_ratio 2, as VMamba v2).
SIZES = {
    "tiny": dict(depths=(2, 2, 4, 2), dims=96),
    "small": dict(depths=(2, 2, 15, 2), dims=96),
    "base": dict(depths=(2, 2, 15, 2), dims=128),
}
HEAD_KEYS = ("classifier.head.weight", "classifier.head.bias")
LOCAL_SCAN_MARK = ".op.scan."  # parameters of LQMamba's window scan, absent from VMamba checkpoints


class LoadReport(NamedTuple):
    """Keys of a weights file that were not used, or that the model lacked."""

    missing: list[str]
    unexpected: list[str]
    wrong_shape: list[str]
    dropped_head: bool


def backbone_of_run(path: str | Path) -> dict[str, torch.Tensor]:
    """The VMamba-keyed weights a QMamba run trained (``model.init_from``)."""
    trained = read_trained_weights(path)
    if trained.model_target != f"{__name__}.QMamba":
        raise WeightsMismatchError(f"model.init_from={path} is a run of {trained.model_target}, not of QMamba; "
                                   "start from a model=qmamba run")
    state = trained.of("model.backbone")
    if not state:
        raise WeightsMismatchError(f"model.init_from={path} holds no QMamba weights: that run trained only a "
                                   "prompt; start from a run that trained the model (prompt=none)")
    return state


@register_model("qmamba")
class QMamba(IQAModel):
    """VMamba → global average pool → linear → one score per image.

    Args:
        size: ``tiny`` / ``small`` / ``base`` (Table 1).
        scan: ``cross`` (QMamba, VMamba's four-way scan) or ``local`` (LQMamba).
        pretrained: a local VMamba ImageNet checkpoint (``.pth`` with a ``model`` entry, or
            ``.safetensors``); nothing is downloaded.
        weights: a local state dict with VMamba's key names (e.g. a trained QMamba), loaded
            after ``pretrained``.
        init_from: a previous run's checkpoint (``train.py``'s ``.ckpt``) whose backbone and head
            start this model, e.g. a source-domain run before prompt tuning on a target
            (the transferable task, Sec. 4.4); loaded last.
        strict: refuse weights whose keys do not fit (the 1000-class ImageNet head, and the
            local-scan gates missing from a VMamba checkpoint, are expected and allowed).
        scan_backend: ``auto`` | ``cuda`` | ``torch``, for :func:`iqa.ops.selective_scan`.
        tuning: ``full`` trains everything; ``linear_probe`` freezes all but the head and keeps the
            backbone in eval mode (Table 3's "linear probe").
        **vmamba_kwargs: VMamba's constructor arguments (``depths``, ``dims``, ``ssm_d_state``,
            ``ssm_ratio``, ``mlp_ratio``, ``drop_path_rate``, ``num_classes``, ``window_sizes``, …;
            see :class:`VSSM`), overriding the size's.
    """

    tunings = ("full", "linear_probe")

    def __init__(
        self,
        size: str = "tiny",
        scan: str = "cross",
        pretrained: str | Path | None = None,
        weights: str | Path | Mapping[str, torch.Tensor] | None = None,
        init_from: str | Path | None = None,
        strict: bool = True,
        scan_backend: str = "auto",
        tuning: str = "full",
        **vmamba_kwargs,
    ) -> None:
        if size not in SIZES:
            raise ConfigurationError(f"model.size={size!r}: choose one of {', '.join(SIZES)}")
        if tuning not in self.tunings:
            raise ConfigurationError(f"model.tuning={tuning!r}: {type(self).__name__} offers {', '.join(self.tunings)}")
        # Any input side works: the local scan zero-pads maps its windows do not tile.
        super().__init__(IMAGENET_MEAN, IMAGENET_STD, fixed_input_size=None)
        config = {**SIZES[size], "num_classes": 1, "drop_path_rate": 0.1, **vmamba_kwargs}
        self.backbone = VSSM(scan=scan, scan_backend=scan_backend, **config)
        self.frozen_backbone = tuning == "linear_probe"
        if self.frozen_backbone:
            self.backbone.requires_grad_(False)
            self.head.requires_grad_(True)
        if pretrained is not None:
            if not is_weights_file(str(pretrained)):
                raise PretrainedWeightsError(
                    f"model.pretrained={pretrained!r}: VMamba weights are not in timm; download a checkpoint "
                    "from the MzeroMiko/VMamba releases (e.g. vssm_small_0229_ckpt_epoch_222.pth for size=small) "
                    "and pass its path (docs/weights_and_data.md#vmamba-checkpoints-qmamba)")
            self.load_vmamba(pretrained, strict)
        if weights is not None:
            self.load_vmamba(weights, strict)
        if init_from is not None:
            self.load_vmamba(backbone_of_run(init_from), strict)

    def load_vmamba(self, source: str | Path | Mapping[str, torch.Tensor], strict: bool = True) -> LoadReport:
        """Load weights with VMamba's key names into the backbone; returns (and logs) what did not fit.

        A classifier head of another shape (ImageNet's 1000 classes) is dropped and keeps its
        initialisation. With ``strict`` any other missing, unexpected or mis-shaped key raises.
        """
        state = dict(source if isinstance(source, Mapping) else read_state_dict(source))
        own = self.backbone.state_dict()
        dropped_head = any(k in state and state[k].shape != own[k].shape for k in HEAD_KEYS)
        if dropped_head:
            for key in HEAD_KEYS:
                state.pop(key, None)
        allowed = set(HEAD_KEYS) if dropped_head else set()
        local_scan_keys = {k for k in own if LOCAL_SCAN_MARK in k}
        if local_scan_keys.isdisjoint(state):  # a VMamba checkpoint: LQMamba's gates start fresh
            allowed |= local_scan_keys
        name = "the given state dict" if isinstance(source, Mapping) else str(source)
        if strict:
            KeyDiff.of(state, own, may_miss=allowed).check(
                name, "this QMamba (VMamba key names expected)",
                "check size/depths/dims/scan, or pass strict=False to load what fits")
        diff = KeyDiff.of(state, own)
        missing, unexpected = diff.missing, diff.unexpected
        wrong_shape = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
        self.backbone.load_state_dict({k: v for k, v in state.items() if k in own and k not in wrong_shape},
                                      strict=False)
        mark_weights_loaded(self.backbone)
        report = LoadReport(missing, unexpected, wrong_shape, dropped_head)
        if missing or unexpected or wrong_shape:
            _logger.warning("loaded %s: %d keys kept their initialisation (%s), %d unused (%s), %d of another "
                            "shape (%s)%s", name, len(missing), missing[:5], len(unexpected), unexpected[:5],
                            len(wrong_shape), wrong_shape[:5], "; classifier head dropped" if dropped_head else "")
        return report

    def frozen_parts(self) -> list[torch.nn.Module]:
        return [self.backbone] if self.frozen_backbone else []  # its head, a Linear, acts the same in eval

    @property
    def stage_channels(self) -> list[int]:
        """Channel width of each stage's output (what a feature prompt modulates)."""
        return list(self.backbone.dims)

    @property
    def head(self) -> torch.nn.Linear:
        """The regression head (trainable beside a prompt with ``tune_head``)."""
        return self.backbone.classifier.head

    def stage_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's feature map (before its downsample), fine to coarse."""
        return self.backbone.stage_features(images)

    def forward(self, images: torch.Tensor, stage_hook: StageHook | None = None) -> torch.Tensor:
        """Scores ``(B,)``. ``stage_hook(i, features)`` may transform stage ``i``'s output (a prompt)."""
        return self.backbone(images, stage_hook).squeeze(-1)
