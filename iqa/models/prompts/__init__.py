"""Prompts that adapt a frozen model: on its input pixels, or on its stage features."""

from iqa.models.prompts.pixel import OverlayPrompt, PaddingPrompt, PatchPrompt, PixelPrompt
from iqa.models.prompts.style import FeaturePrompt, LinearProbe, ScaleShiftPrompt, StylePrompt

__all__ = ["FeaturePrompt", "LinearProbe", "OverlayPrompt", "PaddingPrompt", "PatchPrompt", "PixelPrompt", "ScaleShiftPrompt",
           "StylePrompt"]
