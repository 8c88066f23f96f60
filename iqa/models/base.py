"""The contract every IQA model follows (as in timm, normalisation lives with the model)."""

from __future__ import annotations

import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)


class ConfigurationError(ValueError):
    """An incompatible combination of config values; the message names the keys."""


class IQAModel(nn.Module):
    """Maps *normalised* images ``(B, 3, H, W)`` to one quality score per image ``(B,)``.

    Attributes:
        mean, std: the per-channel normalisation the model expects; the pipeline
            (:class:`iqa.models.pipeline.ScoringPipeline`) applies it to [0, 1] pixels.
        fixed_input_size: the square side the model requires, or ``None`` when any
            size works (e.g. CNNs with global pooling).
    """

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
