"""Pixel-level visual prompts in front of any frozen transformers vision-language model.

The same method as :mod:`iqa.models.methods.vp_mplug` on a model loaded with
``AutoModelForImageTextToText`` / ``AutoProcessor`` from a local folder or the HF cache
(LLaVA-1.5, LLaVA-NeXT at one tile, SmolVLM without image splitting, …). The processor builds the
chat text and expands the image placeholder once; the images themselves bypass its
preprocessing so that the prompt acts on pixels before the normalisation.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from iqa.models.base import ConfigurationError, IQAModel, mark_weights_loaded, torch_dtype
from iqa.models.methods.quality_readout import QualityReadout, chat_turn
from iqa.registry import register_model


def _square_side(pixel_values: torch.Tensor, hf_folder: str) -> int:
    """The side of the processor's (1, 3, S, S) output; other layouts cannot take a pixel prompt."""
    if pixel_values.dim() != 4 or pixel_values.shape[1] != 3 or pixel_values.shape[2] != pixel_values.shape[3]:
        raise ConfigurationError(
            f"model.hf_folder={hf_folder}: its processor gives pixel_values of shape "
            f"{tuple(pixel_values.shape)}, not one "
            "square (1, 3, S, S) image, so a pixel prompt cannot be placed (e.g. Qwen2-VL's patch sequences or "
            "multi-tile inputs); use a LLaVA-style model, or turn image splitting off in its processor config")
    return int(pixel_values.shape[-1])


@register_model("vp_mllm")
class VisualPromptMLLM(IQAModel):
    """A frozen image-text-to-text model scoring normalised ``(B, 3, S, S)`` images.

    Args:
        hf_folder: a local folder, or the id of one already in the HF cache (nothing is downloaded).
        quality_score_type: rating-word readout (see :mod:`iqa.models.methods.quality_readout`).
        question: the user turn's text; default: the score type's own.
        answer_prefix: text the assistant turn starts with (Q-Align's "The quality of the image is").
        dtype: weights' type (``bfloat16`` on GPUs, ``float32`` for CPU tests).
        gradient_checkpointing: recompute the frozen layers in backward.
    """

    scores_without_training = True  # quality read from rating-word logits (iqa/zero_shot.py)

    def __init__(
        self,
        hf_folder: str | Path,
        quality_score_type: str = "good+fine_vs_poor+bad",
        question: str | None = None,
        answer_prefix: str | None = None,
        dtype: str = "bfloat16",
        gradient_checkpointing: bool = True,
    ) -> None:
        if hf_folder is None:
            raise ConfigurationError("model=vp_mllm needs model.hf_folder=<local folder or cached HF id> "
                                     "(docs/weights_and_data.md#vp_mllm-models)")
        processor = AutoProcessor.from_pretrained(str(hf_folder), local_files_only=True)
        default_question, default_prefix = chat_turn(quality_score_type)
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": question or default_question}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        text += answer_prefix if answer_prefix is not None else default_prefix
        image_processor = processor.image_processor
        side = image_processor.crop_size or image_processor.size
        side = side.get("height") or side.get("shortest_edge") or side.get("longest_edge")
        encoded = processor(text=text, images=Image.new("RGB", (side, side)), return_tensors="pt")
        super().__init__(tuple(image_processor.image_mean), tuple(image_processor.image_std),
                         fixed_input_size=_square_side(encoded["pixel_values"], str(hf_folder)))
        backbone = AutoModelForImageTextToText.from_pretrained(str(hf_folder), local_files_only=True,
                                                               dtype=torch_dtype(dtype))
        if gradient_checkpointing:  # renamed activation_checkpointing_enable in later transformers 5 releases
            getattr(backbone, "activation_checkpointing_enable", backbone.gradient_checkpointing_enable)()
        self.backbone = mark_weights_loaded(backbone).requires_grad_(False).eval()
        self.head = None  # scores are read from rating words
        self.readout = QualityReadout(quality_score_type, processor.tokenizer)
        self.register_buffer("input_ids", encoded["input_ids"], persistent=False)

    def frozen_parts(self) -> list[nn.Module]:
        return [self.backbone]  # frozen: no dropout, whatever the trainer asks

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        input_ids = self.input_ids.expand(len(images), -1)
        pixel_values = images.to(next(self.backbone.parameters()).dtype)
        output = self.backbone(input_ids=input_ids, pixel_values=pixel_values,
                               attention_mask=torch.ones_like(input_ids),
                               logits_to_keep=1, use_cache=False)
        return self.readout(output.logits[:, -1])
