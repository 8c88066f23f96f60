"""Prompts that adapt a frozen model: on its input pixels, or on its stage features."""

from iqa.models.prompts.feature_tuners import ConvPrompt, CrossAttentionPrompt
from iqa.models.prompts.pixel import OverlayPrompt, PaddingPrompt, PatchPrompt, PixelPrompt
from iqa.models.prompts.style import FeaturePrompt, LinearProbe, ScaleShiftPrompt, StylePrompt

__all__ = [
    "ConvPrompt", "CrossAttentionPrompt", "FeaturePrompt", "LinearProbe", "OverlayPrompt", "PaddingPrompt",
    "PatchPrompt", "PixelPrompt", "ScaleShiftPrompt", "StylePrompt",
]
