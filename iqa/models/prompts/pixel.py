"""Pixel-level visual prompts (Bahng et al. 2022, "Exploring Visual Prompts for Adapting
Large-Scale Models"): learnable pixels added to (or multiplied with) the image *before*
the model's normalisation, so a frozen model can be adapted by its input alone.

Each prompt value is ``delta · tanh(p)`` with ``p ~ N(0, 0.01²)`` at initialisation (as in
the mplug2-vp-for-nriqa code); the prompted image is clamped to [0, 1].

* ``mode="add"``: x + prompt inside the prompt region, x unchanged outside.
* ``mode="mul"``: x · prompt where the prompt image is zero outside its region, so pixels
  outside the region become 0 — faithful to the official code (documented in docs/prompts.md).

The canvas is the crop the data module produces (``data.crop_size``): the pipeline passes its side
to :meth:`PixelPrompt.bind`, which builds the parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from iqa.models.base import ConfigurationError, IQAModel
from iqa.models.prompts.base import Prompt


class PixelPrompt(Prompt):
    """Base class: subclasses define :meth:`build` (the parameters for a side) and
    :meth:`prompt_image`, the (3, H, W) prompt canvas."""

    def __init__(self, mode: str = "add", delta: float = 1.0, freeze_model: bool = True,
                 tune_head: bool = False) -> None:
        super().__init__(freeze_model, tune_head)
        if mode not in ("add", "mul"):
            raise ConfigurationError(f"prompt.mode must be 'add' or 'mul', got {mode!r}")
        self.mode = mode
        self.delta = delta
        self.input_size: int | None = None  # the canvas side, set by bind

    def bind(self, model: IQAModel, input_size: int | None) -> None:
        """Build the prompt for ``input_size``² crops; refused for whole images (``None``)."""
        if input_size is None:
            raise ConfigurationError(
                f"prompt={type(self).__name__} needs a fixed input size but data.crop_size is null; set data.crop_size"
            )
        self.input_size = input_size
        self.build(input_size)

    def build(self, side: int) -> None:
        """Create the parameters for a ``side`` × ``side`` canvas."""
        raise NotImplementedError

    def _parameter(self, *shape: int) -> nn.Parameter:
        return nn.Parameter(torch.randn(*shape) * 0.01)

    def prompt_image(self) -> torch.Tensor:
        """The prompt values on the full (3, H, W) canvas, zero outside the region."""
        raise NotImplementedError

    def prompt_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] → prompted images in [0, 1]."""
        prompt = self.prompt_image().to(images.dtype)
        prompted = images * prompt if self.mode == "mul" else images + prompt
        return prompted.clamp(0, 1)


class PaddingPrompt(PixelPrompt):
    """A border of width ``size`` around the image: 3·2S(W+H−2S) values (the seed README's
    3·2S(W+H−S) counts the corners twice). Stored as four strips."""

    def __init__(self, size: int = 30, mode: str = "add", delta: float = 1.0, freeze_model: bool = True,
                 tune_head: bool = False) -> None:
        super().__init__(mode, delta, freeze_model, tune_head)
        self.size = size

    def build(self, side: int) -> None:
        size = self.size
        if not 0 < 2 * size < side:
            raise ConfigurationError(f"prompt.size={size} must be in (0, {side // 2}) for data.crop_size={side}")
        inner = side - 2 * size
        self.top, self.bottom = self._parameter(3, size, side), self._parameter(3, size, side)
        self.left, self.right = self._parameter(3, inner, size), self._parameter(3, inner, size)

    def prompt_image(self) -> torch.Tensor:
        inner = self.input_size - 2 * self.size
        centre = self.top.new_zeros(3, inner, inner)
        top, bottom, left, right = (self.delta * torch.tanh(p) for p in (self.top, self.bottom, self.left, self.right))
        return torch.cat([top, torch.cat([left, centre, right], dim=2), bottom], dim=1)


class PatchPrompt(PixelPrompt):
    """A square patch of side ``size`` at the centre or the top-left corner: 3·S² values."""

    def __init__(self, size: int = 30, position: str = "center", mode: str = "add", delta: float = 1.0,
                 freeze_model: bool = True, tune_head: bool = False) -> None:
        super().__init__(mode, delta, freeze_model, tune_head)
        if position not in ("center", "top_left"):
            raise ConfigurationError(f"prompt.position must be 'center' or 'top_left', got {position!r}")
        self.size = size
        self.position = position

    def build(self, side: int) -> None:
        if not 0 < self.size <= side:
            raise ConfigurationError(f"prompt.size={self.size} must be in (0, {side}] for data.crop_size={side}")
        self.offset = (side - self.size) // 2 if self.position == "center" else 0
        self.patch = self._parameter(3, self.size, self.size)

    def prompt_image(self) -> torch.Tensor:
        canvas = self.patch.new_zeros(3, self.input_size, self.input_size)
        window = slice(self.offset, self.offset + self.size)
        canvas[:, window, window] = self.delta * torch.tanh(self.patch)
        return canvas


class OverlayPrompt(PixelPrompt):
    """A prompt over the whole image: 3·H·W values (602,112 at 448²)."""

    def build(self, side: int) -> None:
        self.overlay = self._parameter(3, side, side)

    def prompt_image(self) -> torch.Tensor:
        return self.delta * torch.tanh(self.overlay)
