"""The contract every IQA model follows (as in timm, normalisation lives with the model)."""

from __future__ import annotations

import torch
import torch.nn as nn

from iqa.errors import ConfigurationError

__all__ = ["ConfigurationError", "IQAModel"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """``model.dtype`` (``float32`` | ``bfloat16`` | ``float16``) as a torch dtype."""
    if name not in DTYPES:
        raise ConfigurationError(f"model.dtype={name!r}: choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


WEIGHTS_LOADED = "_iqa_weights_loaded"


def mark_weights_loaded(module: nn.Module) -> nn.Module:
    """Record that ``module``'s parameters were read from a weights file (not random)."""
    setattr(module, WEIGHTS_LOADED, True)
    return module


def random_frozen_parameters(model: nn.Module) -> int:
    """How many frozen parameters of ``model`` keep their random initialisation: those
    with ``requires_grad=False`` in no module marked by :func:`mark_weights_loaded`."""

    def count(module: nn.Module, loaded: bool) -> int:
        loaded = loaded or getattr(module, WEIGHTS_LOADED, False)
        own = 0 if loaded else sum(p.numel() for p in module.parameters(recurse=False) if not p.requires_grad)
        return own + sum(count(child, loaded) for child in module.children())

    return count(model, False)


class KeepsFrozenPartsInEval(nn.Module):
    """A module whose frozen parts stay in eval mode (no dropout, normalisation statistics
    fixed) whatever the trainer asks: ``train()`` puts :meth:`frozen_parts` back in eval."""

    def frozen_parts(self) -> list[nn.Module]:
        """The sub-modules to keep in eval mode; none by default."""
        return []

    def train(self, mode: bool = True) -> KeepsFrozenPartsInEval:
        super().train(mode)
        for part in self.frozen_parts():
            part.eval()
        return self


class IQAModel(KeepsFrozenPartsInEval):
    """Maps *normalised* images ``(B, 3, H, W)`` to one quality score per image ``(B,)``.

    Attributes:
        mean, std: the per-channel normalisation the model expects; the pipeline
            (:class:`iqa.models.pipeline.ScoringPipeline`) applies it to [0, 1] pixels.
        fixed_input_size: the square side the model requires, or ``None`` when any
            size works (e.g. CNNs with global pooling).
        scores_without_training: the model reads quality without a trained head (frozen
            MLLMs' rating words), so it can score zero-shot (:mod:`iqa.zero_shot`).
        stage_channels: the channel width of each stage's output when ``forward`` takes a
            ``stage_hook`` (feature prompts modulate the stages), else ``None``.
        head: the regression head (trained beside a prompt with ``tune_head``), or ``None``
            for a model without one; every subclass sets it.
    """

    scores_without_training: bool = False
    stage_channels: list[int] | None = None
    head: nn.Module | None  # no class default: it would hide the sub-module a subclass registers

    def __init__(
        self,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        fixed_input_size: int | None = None,
    ) -> None:
        super().__init__()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.fixed_input_size = fixed_input_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError
