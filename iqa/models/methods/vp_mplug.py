"""Pixel-level visual prompts in front of a frozen mPLUG-Owl2 (arXiv 2509.03494).

The image, already prompted by :class:`iqa.models.prompts.PixelPrompt` and normalised by the
pipeline, goes with a fixed instruction through the frozen model; quality is read from the
next-token logits of rating words (:class:`QualityReadout`). Only the prompt trains.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from transformers import AutoTokenizer, PretrainedConfig

from iqa.models.base import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, ConfigurationError, IQAModel, torch_dtype
from iqa.models.methods.quality_readout import QualityReadout, mplug_owl2_text, mplug_turn, tokenize_with_image
from iqa.models.mplug_owl2 import IMAGE_TOKEN_INDEX, load_mplug_owl2
from iqa.registry import register_model

# The official visual-prompt code normalises with ImageNet statistics; mPLUG-Owl2 was trained with CLIP's.
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD)}


def local_folder(hf_folder: str | Path) -> Path:
    """``hf_folder`` when it is a folder, else the HF cache's snapshot of that model id (no download)."""
    path = Path(hf_folder).expanduser()
    if path.is_dir():
        return path
    try:
        return Path(snapshot_download(str(hf_folder), local_files_only=True))
    except (HFValidationError, LocalEntryNotFoundError):  # not a cached id either: the loader names the folder
        return path


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if name not in NORMALIZATIONS:
        raise ConfigurationError(f"model.normalize={name!r}: choose imagenet (official) or clip")
    return NORMALIZATIONS[name]


@register_model("vp_mplug")
class VisualPromptMplugOwl2(IQAModel):
    """Frozen mPLUG-Owl2 scoring normalised ``(B, 3, S, S)`` images (S = 448 for the 7B).

    Args:
        hf_folder: the official model folder (``config.json``, weights, tokenizer files), e.g.
            ``mplug-owl2-llama2-7b`` or Q-Align's ``one-align``: a local folder, or the id of one
            already in the HF cache.
        quality_score_type: rating-word readout, e.g. ``good+fine_vs_poor+bad`` or ``qalign5``.
        question: the user turn, with ``<|image|>`` exactly once; default: the score type's own.
        answer_prefix: text the assistant turn starts with; default: the score type's own
            (Q-Align's "The quality of the image is").
        tokenizer: folder of the tokenizer when it is not in ``hf_folder``.
        normalize: ``imagenet`` (the official visual-prompt code) or ``clip`` (mPLUG-Owl2's own).
        dtype: weights' type; ``bfloat16`` on GPUs, ``float32`` for CPU tests.
        gradient_checkpointing: recompute the frozen layers in backward, so prompt gradients at
            batch 32 fit in memory.
        attn_implementation: ``sdpa`` or ``eager``.
    """

    scores_without_training = True  # quality read from rating-word logits (iqa/zero_shot.py)

    def __init__(
        self,
        hf_folder: str | Path,
        quality_score_type: str = "good+fine_vs_poor+bad",
        question: str | None = None,
        answer_prefix: str | None = None,
        tokenizer: str | Path | None = None,
        normalize: str = "imagenet",
        dtype: str = "bfloat16",
        gradient_checkpointing: bool = True,
        attn_implementation: str = "sdpa",
    ) -> None:
        if hf_folder is None:
            raise ConfigurationError("model=vp_mplug needs model.hf_folder=<mPLUG-Owl2 folder, or its id in the HF "
                                     "cache> "
                                     "(docs/weights_and_data.md#mplug-owl2)")
        mean, std = normalization(normalize)
        hf_folder = local_folder(hf_folder)
        backbone = load_mplug_owl2(hf_folder, dtype=torch_dtype(dtype), attn_implementation=attn_implementation,
                                   gradient_checkpointing=gradient_checkpointing)
        super().__init__(mean, std, fixed_input_size=backbone.config.vision.image_size)
        self.backbone = backbone.requires_grad_(False).eval()
        self.head = None  # scores are read from rating words
        # config=: the folder's config.json (model_type mplug_owl2) is not a transformers model type
        text_tokenizer = AutoTokenizer.from_pretrained(str(tokenizer or hf_folder), local_files_only=True,
                                                       config=PretrainedConfig())
        self.readout = QualityReadout(quality_score_type, text_tokenizer)
        default_question, default_prefix = mplug_turn(quality_score_type)
        text = mplug_owl2_text(question or default_question,
                               answer_prefix if answer_prefix is not None else default_prefix)
        ids = tokenize_with_image(text_tokenizer, text, IMAGE_TOKEN_INDEX)
        self.register_buffer("input_ids", torch.tensor([ids]), persistent=False)

    def frozen_parts(self) -> list[nn.Module]:
        return [self.backbone]  # frozen: no dropout, whatever the trainer asks

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        input_ids = self.input_ids.expand(len(images), -1)
        last = self.backbone.model(input_ids, images).last_hidden_state[:, -1]
        return self.readout(self.backbone.lm_head(last))  # next-token logits at the last position only
