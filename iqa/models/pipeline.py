"""[0, 1] pixels → optional pixel prompt → the model's normalisation → model (optionally with a
feature prompt on its stages) → scores."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn

from iqa.models.base import ConfigurationError, IQAModel, KeepsFrozenPartsInEval, random_frozen_parameters
from iqa.models.prompts.base import Prompt

log = logging.getLogger(__name__)


def _outputs_zero(model: IQAModel) -> bool:
    """True when the model's ``head`` ends in a linear layer whose weights and bias are all zero
    (never for tensors on the meta device, which hold no values)."""
    linear = [m for m in model.head.modules() if isinstance(m, nn.Linear)] if model.head is not None else []
    return bool(linear) and all(not p.is_meta and not p.any() for p in linear[-1].parameters())


def _warn_if_random_frozen(model: nn.Module) -> None:
    """Warn once when frozen parameters were never loaded from a weights file."""
    count = random_frozen_parameters(model)
    if count:
        log.warning(
            "model=%s: %s frozen parameters are randomly initialised (no weights were loaded), so the "
            "scores come from a random feature extractor. Set model.pretrained= (model.hf_folder= for "
            "vp_mplug / vp_mllm); where to get weights: docs/weights_and_data.md#weights",
            type(model).__name__, f"{count:,}")


class ScoringPipeline(KeepsFrozenPartsInEval):
    """Wraps a model so it takes [0, 1] images, as data loaders produce them.

    A prompt (:class:`iqa.models.prompts.Prompt`) is bound here, once, to the model and the
    input size. Its :meth:`~iqa.models.prompts.Prompt.prompt_pixels` acts before the model's
    normalisation (pixel prompts, Bahng et al. 2022); its ``stage_hook``, when it has one, is
    passed to the model (feature prompts, e.g. StylePrompt). A prompt with ``freeze_model``
    freezes the whole model (except its ``head`` when the prompt has ``tune_head``): only the
    prompt trains, and the model stays in eval mode.

    Args:
        model: the IQA model (normalised images → one score per image).
        prompt: optional prompt.
        input_size: the crop side the data module produces (``data.crop_size``), or
            ``None`` for whole images; checked against what model and prompt need.
    """

    def __init__(self, model: IQAModel, prompt: Prompt | None = None, input_size: int | None = None) -> None:
        super().__init__()
        fixed = model.fixed_input_size
        if fixed is not None and input_size != fixed:
            raise ConfigurationError(
                f"model={type(model).__name__} needs {fixed}x{fixed} inputs but data.crop_size={input_size}; "
                f"set data.crop_size={fixed}"
            )
        if prompt is not None:
            prompt.bind(model, input_size)
        self.model = model
        self.prompt = prompt
        self.register_buffer("mean", torch.tensor(model.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(model.std).view(1, 3, 1, 1), persistent=False)
        self.model_frozen = prompt is not None and prompt.freeze_model
        if self.model_frozen:
            self.model.requires_grad_(False)
            if prompt.tune_head:
                if model.head is None:
                    raise ConfigurationError(
                        f"prompt.tune_head=true but model={type(model).__name__} has no regression head; "
                        "set prompt.tune_head=false")
                model.head.requires_grad_(True)
            elif _outputs_zero(model):
                raise ConfigurationError(
                    f"prompt={type(prompt).__name__} freezes model={type(model).__name__}, whose regression head "
                    "starts at zero: every score would stay 0 and nothing would learn. Set prompt.tune_head=true "
                    "(prompt + linear head), or prompt a model that reads quality without a new head (vp_mplug)")
        _warn_if_random_frozen(model)

    def frozen_parts(self) -> list[nn.Module]:
        return [self.model] if self.model_frozen else []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: (N, 3, H, W) in [0, 1] → (N,) scores."""
        if self.prompt is None:
            return self.model((images - self.mean) / self.std)
        normalised = (self.prompt.prompt_pixels(images) - self.mean) / self.std
        hook = self.prompt.stage_hook
        return self.model(normalised) if hook is None else self.model(normalised, stage_hook=hook)
