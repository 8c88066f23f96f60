"""Input-level prompts that adapt a frozen model."""

from iqa.models.prompts.pixel import OverlayPrompt, PaddingPrompt, PatchPrompt, PixelPrompt

__all__ = ["OverlayPrompt", "PaddingPrompt", "PatchPrompt", "PixelPrompt"]
