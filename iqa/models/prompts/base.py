"""What :class:`iqa.models.pipeline.ScoringPipeline` needs from a prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from iqa.models.backbones.vmamba import StageHook
    from iqa.models.base import IQAModel


class Prompt(nn.Module):
    """Learnable parameters that adapt a model: on its input pixels (:meth:`prompt_pixels`), on its
    stage outputs (:attr:`stage_hook`), or both.

    The pipeline calls :meth:`bind` once, in its constructor, so the parameters exist before the
    optimiser is built and before a checkpoint is loaded.

    Attributes:
        freeze_model: freeze the model; only the prompt trains, and the model stays in eval mode.
        tune_head: with ``freeze_model``, the model's regression head (``model.head``) trains too.
    """

    freeze_model: bool
    tune_head: bool

    def __init__(self, freeze_model: bool = True, tune_head: bool = False) -> None:
        super().__init__()
        self.freeze_model = freeze_model
        self.tune_head = tune_head

    def bind(self, model: IQAModel, input_size: int | None) -> None:
        """Build the parameters for ``model`` and square crops of side ``input_size`` (``None``: whole
        images of any size); raises :class:`~iqa.errors.ConfigurationError` when they do not fit."""
        raise NotImplementedError

    def prompt_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1], before the model's normalisation → the images the model
        sees; unchanged by default."""
        return images

    @property
    def stage_hook(self) -> StageHook | None:
        """What the model calls as ``stage_hook(i, features)`` on each stage's output
        (``model(images, stage_hook=...)``), or ``None`` (the default) to leave the stages alone."""
        return None
