"""Prompts that adapt a frozen model: on its input pixels, or on its stage features."""

from iqa.models.prompts.base import Prompt
from iqa.models.prompts.feature_tuners import ConvPrompt, CrossAttentionPrompt
from iqa.models.prompts.pixel import OverlayPrompt, PaddingPrompt, PatchPrompt, PixelPrompt
from iqa.models.prompts.style import FeaturePrompt, ScaleShiftPrompt, StylePrompt

__all__ = [
    "ConvPrompt", "CrossAttentionPrompt", "FeaturePrompt", "OverlayPrompt", "PaddingPrompt", "PatchPrompt",
    "PixelPrompt", "Prompt", "ScaleShiftPrompt", "StylePrompt",
]
