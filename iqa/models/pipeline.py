"""[0, 1] pixels → optional pixel prompt → the model's normalisation → model (optionally with a
feature prompt on its stages) → scores."""

from __future__ import annotations

import torch
import torch.nn as nn

from iqa.models.base import ConfigurationError, IQAModel


class ScoringPipeline(nn.Module):
    """Wraps a model so it takes [0, 1] images, as data loaders produce them.

    The pixel prompt (Bahng et al. 2022) acts on pixels, so the model's normalisation
    is applied *after* it. A feature prompt (``needs_stage_hook``, e.g. StylePrompt) is
    built for the model's ``stage_channels`` and passed to it as ``stage_hook``. A prompt
    with ``freeze_model`` freezes the whole model (except its ``head`` when the prompt has
    ``tune_head``): only the prompt trains, and the model stays in eval mode.

    Args:
        model: the IQA model (normalised images → one score per image).
        prompt: optional pixel prompt.
        input_size: the crop side the data module produces (``data.crop_size``), or
            ``None`` for whole images; checked against what model and prompt need.
    """

    def __init__(self, model: IQAModel, prompt: nn.Module | None = None, input_size: int | None = None) -> None:
        super().__init__()
        fixed = getattr(model, "fixed_input_size", None)
        if fixed is not None and input_size != fixed:
            raise ConfigurationError(
                f"model={type(model).__name__} needs {fixed}x{fixed} inputs but data.crop_size={input_size}; "
                f"set data.crop_size={fixed}"
            )
        if prompt is not None and getattr(prompt, "needs_fixed_size", False):
            if input_size is None:
                raise ConfigurationError(
                    f"prompt={type(prompt).__name__} needs a fixed input size but data.crop_size is null; "
                    "set data.crop_size"
                )
            prompt_size = getattr(prompt, "image_size", input_size)
            if prompt_size != input_size:
                raise ConfigurationError(
                    f"prompt.image_size={prompt_size} differs from data.crop_size={input_size}; leave "
                    "prompt.image_size at its default ${data.crop_size}"
                )
        self.feature_prompt = prompt is not None and getattr(prompt, "needs_stage_hook", False)
        if self.feature_prompt:
            channels = getattr(model, "stage_channels", None)
            if channels is None:
                raise ConfigurationError(
                    f"prompt={type(prompt).__name__} modulates the stages of a hierarchical backbone, but "
                    f"model={type(model).__name__} exposes no stages; use model=qmamba")
            prompt.bind(channels)
        self.model = model
        self.prompt = prompt
        self.register_buffer("mean", torch.tensor(model.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(model.std).view(1, 3, 1, 1), persistent=False)
        self.model_frozen = prompt is not None and getattr(prompt, "freeze_model", False)
        if self.model_frozen:
            self.model.requires_grad_(False)
            if getattr(prompt, "tune_head", False):
                self.model.head.requires_grad_(True)

    def train(self, mode: bool = True) -> ScoringPipeline:
        super().train(mode)
        if self.model_frozen:
            self.model.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: (N, 3, H, W) in [0, 1] → (N,) scores."""
        if self.feature_prompt:
            return self.model((images - self.mean) / self.std, stage_hook=self.prompt)
        if self.prompt is not None:
            images = self.prompt(images)
        return self.model((images - self.mean) / self.std)
