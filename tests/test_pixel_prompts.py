"""Unit tests of the pixel prompts (iqa/models/prompts/pixel.py) and of ScoringPipeline with one.

Every prompt parameter is set to ``atanh(v / delta)`` so the prompt value is exactly ``v``:
the tests then know which pixels change, and by how much.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from iqa.errors import ConfigurationError
from iqa.models.base import IQAModel, mark_weights_loaded
from iqa.models.pipeline import ScoringPipeline
from iqa.models.prompts import OverlayPrompt, PaddingPrompt, PatchPrompt, PixelPrompt

N = 16  # crop side (W = H = N)
S = 3  # prompt size


class TinyModel(IQAModel):
    """A 'pretrained' model with a ``head`` that does not start at zero."""

    def __init__(self) -> None:
        super().__init__(fixed_input_size=None)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 1))
        mark_weights_loaded(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images)).squeeze(-1)


def bound(prompt: PixelPrompt, size: int = N) -> PixelPrompt:
    """``prompt`` built for ``size``² crops, as ScoringPipeline does."""
    prompt.bind(TinyModel(), size)
    return prompt


def set_prompt_value(prompt: PixelPrompt, value: float) -> PixelPrompt:
    """Make ``delta · tanh(p) == value`` for every prompt parameter."""
    with torch.no_grad():
        for parameter in prompt.parameters():
            parameter.fill_(math.atanh(value / prompt.delta))
    return prompt


def grey(value: float = 0.5, batch: int = 2, size: int = N) -> torch.Tensor:
    return torch.full((batch, 3, size, size), value)


def border_mask(size: int = N, width: int = S) -> torch.Tensor:
    """True on the padding border of ``width`` pixels."""
    mask = torch.ones(size, size, dtype=torch.bool)
    mask[width:size - width, width:size - width] = False
    return mask


def window_mask(offset: int, side: int, size: int = N) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[offset:offset + side, offset:offset + side] = True
    return mask


def changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(H, W) mask of pixels that changed in any image and channel."""
    return (before != after).flatten(0, 1).any(dim=0)


PROMPTS = {
    "padding": (lambda **kw: bound(PaddingPrompt(size=S, **kw)), border_mask()),
    "patch_center": (lambda **kw: bound(PatchPrompt(size=S, **kw)), window_mask((N - S) // 2, S)),
    "patch_top_left": (lambda **kw: bound(PatchPrompt(size=S, position="top_left", **kw)), window_mask(0, S)),
    "overlay": (lambda **kw: bound(OverlayPrompt(**kw)), torch.ones(N, N, dtype=torch.bool)),
}


# --- geometry ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(PROMPTS))
def test_add_changes_exactly_the_prompt_region_by_the_prompt_value(kind):
    build, region = PROMPTS[kind]
    prompt = set_prompt_value(build(mode="add"), 0.25)
    images = grey(0.5)
    out = prompt(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(changed(images, out), region)
    assert torch.allclose(out[..., region], torch.full_like(out[..., region], 0.75))
    assert torch.equal(out[..., ~region], images[..., ~region])  # untouched outside, bit for bit


@pytest.mark.parametrize("kind", sorted(PROMPTS))
def test_prompt_image_is_zero_outside_the_region(kind):
    build, region = PROMPTS[kind]
    canvas = set_prompt_value(build(), -0.4).prompt_image()
    assert canvas.shape == (3, N, N)
    assert torch.allclose(canvas[:, region], torch.full_like(canvas[:, region], -0.4))
    assert not canvas[:, ~region].any()


@pytest.mark.parametrize("kind", sorted(PROMPTS))
def test_mul_scales_the_region_and_zeroes_every_pixel_outside_it(kind):
    # The documented (official-code) behaviour: the prompt canvas is 0 outside its region.
    build, region = PROMPTS[kind]
    prompt = set_prompt_value(build(mode="mul"), 0.5)
    images = torch.rand(2, 3, N, N, generator=torch.Generator().manual_seed(0))
    out = prompt(images)
    assert torch.allclose(out[..., region], images[..., region] * 0.5)
    assert not out[..., ~region].any()


def test_padding_border_has_the_configured_width_on_every_side():
    prompt = set_prompt_value(bound(PaddingPrompt(size=S)), 0.25)
    out = prompt(grey(0.5))[0, 0]
    for line in (out[:S], out[-S:], out[:, :S], out[:, -S:]):  # top, bottom, left, right strips
        assert torch.allclose(line, torch.full_like(line, 0.75))
    inner = out[S:N - S, S:N - S]
    assert torch.equal(inner, torch.full_like(inner, 0.5))
    assert out[S - 1, N // 2] == 0.75 and out[S, N // 2] == 0.5  # the first row inside is untouched


def test_padding_strips_map_to_their_sides():
    prompt = bound(PaddingPrompt(size=S))
    values = {"top": 0.1, "bottom": 0.2, "left": 0.3, "right": 0.4}
    with torch.no_grad():
        for name, value in values.items():
            getattr(prompt, name).fill_(math.atanh(value))
    canvas = prompt.prompt_image()[0]
    assert torch.allclose(canvas[:S], torch.tensor(0.1))  # top rows, corners included
    assert torch.allclose(canvas[-S:], torch.tensor(0.2))  # bottom rows, corners included
    assert torch.allclose(canvas[S:N - S, :S], torch.tensor(0.3))
    assert torch.allclose(canvas[S:N - S, -S:], torch.tensor(0.4))


def test_patch_position_center_vs_top_left():
    center, corner = bound(PatchPrompt(size=4)), bound(PatchPrompt(size=4, position="top_left"))
    assert center.offset == (N - 4) // 2 == 6 and corner.offset == 0
    for prompt in (center, corner):
        set_prompt_value(prompt, 0.3)
    assert torch.equal(center.prompt_image()[0] != 0, window_mask(6, 4))
    assert torch.equal(corner.prompt_image()[0] != 0, window_mask(0, 4))
    odd = bound(PatchPrompt(size=4), 15)  # an odd margin puts the extra pixel after the patch
    assert odd.offset == 5


def test_patch_can_cover_the_whole_image():
    prompt = set_prompt_value(bound(PatchPrompt(size=N)), 0.2)
    assert prompt.offset == 0 and torch.allclose(prompt.prompt_image(), torch.tensor(0.2))


# --- parameter counts -------------------------------------------------------------------------

@pytest.mark.parametrize("size, width", [(16, 3), (32, 4), (224, 30), (448, 30)])
def test_padding_parameter_count_is_3_2S_W_plus_H_minus_2S(size, width):
    count = sum(p.numel() for p in bound(PaddingPrompt(size=width), size).parameters())
    assert count == 3 * 2 * width * (size + size - 2 * width)
    assert count == border_mask(size, width).sum() * 3  # one value per border pixel and channel


@pytest.mark.parametrize("size, side", [(16, 3), (32, 32), (224, 30)])
def test_patch_parameter_count_is_3_S_squared(size, side):
    assert sum(p.numel() for p in bound(PatchPrompt(size=side), size).parameters()) == 3 * side ** 2


@pytest.mark.parametrize("size", [16, 28, 448])
def test_overlay_parameter_count_is_3_H_W(size):
    assert sum(p.numel() for p in bound(OverlayPrompt(), size).parameters()) == 3 * size * size
    if size == 448:
        assert 3 * size * size == 602_112  # the figure quoted in the docstring


def test_initial_prompt_is_small_and_random():
    prompt = bound(OverlayPrompt())
    canvas = prompt.prompt_image()
    assert canvas.abs().max() < 0.1 and canvas.std() > 0  # delta · tanh(N(0, 0.01²))


# --- clamping and delta -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["add", "mul"])
def test_prompted_images_are_clamped_to_the_unit_interval(mode):
    prompt = set_prompt_value(bound(OverlayPrompt(mode=mode, delta=3.0)), 2.5 if mode == "mul" else 0.9)
    bright = prompt(grey(0.8))
    assert bright.max() == 1.0 and bright.min() >= 0.0
    assert torch.equal(bright, torch.ones_like(bright))
    set_prompt_value(prompt, -0.9 if mode == "add" else -1.0)
    dark = prompt(grey(0.3))
    assert torch.equal(dark, torch.zeros_like(dark))


def test_delta_scales_the_prompt():
    prompt = bound(OverlayPrompt(delta=0.5))
    with torch.no_grad():
        prompt.overlay.fill_(100.0)  # tanh saturates at 1
    assert torch.allclose(prompt.prompt_image(), torch.tensor(0.5))
    assert torch.allclose(prompt(grey(0.25)), torch.tensor(0.75))


def test_every_prompt_parameter_gets_a_gradient_and_clamped_pixels_pass_none():
    prompt = bound(PatchPrompt(size=S))
    images = grey(0.5).requires_grad_(True)
    prompt(images).sum().backward()
    assert prompt.patch.grad is not None and prompt.patch.grad.abs().min() > 0
    assert torch.equal(images.grad, torch.ones_like(images))  # add: the identity, nothing clamped
    saturated = grey(0.9).requires_grad_(True)  # 0.9 + 0.5 is clamped to 1 inside the patch
    set_prompt_value(prompt, 0.5)
    prompt(saturated).sum().backward()
    region = window_mask((N - S) // 2, S)
    assert not saturated.grad[..., region].any() and saturated.grad[..., ~region].eq(1).all()


# --- flags and errors -------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [PaddingPrompt, PatchPrompt, OverlayPrompt])
def test_flags_are_kept_with_their_defaults(cls):
    kwargs = {} if cls is OverlayPrompt else {"size": 2}
    default = cls(**kwargs)
    assert default.tune_head is False and default.freeze_model is True and default.mode == "add"
    assert default.input_size is None and bound(default).input_size == N
    tuned = cls(tune_head=True, freeze_model=False, **kwargs)
    assert tuned.tune_head is True and tuned.freeze_model is False


@pytest.mark.parametrize("size", [0, -1, N // 2, N // 2 + 1, N])
def test_padding_refuses_a_border_that_leaves_no_centre(size):
    with pytest.raises(ConfigurationError, match=r"prompt\.size") as raised:
        bound(PaddingPrompt(size=size))
    assert f"prompt.size={size}" in str(raised.value) and f"data.crop_size={N}" in str(raised.value)


def test_padding_accepts_the_largest_border():
    assert bound(PaddingPrompt(size=N // 2 - 1)).prompt_image().shape == (3, N, N)


@pytest.mark.parametrize("size", [0, -2, N + 1])
def test_patch_refuses_a_size_outside_the_image(size):
    with pytest.raises(ConfigurationError, match=r"prompt\.size") as raised:
        bound(PatchPrompt(size=size))
    assert f"prompt.size={size}" in str(raised.value) and f"data.crop_size={N}" in str(raised.value)


def test_bad_mode_position_and_missing_crop_size_name_the_key():
    with pytest.raises(ConfigurationError, match=r"prompt\.mode"):
        OverlayPrompt(mode="multiply")
    with pytest.raises(ConfigurationError, match=r"prompt\.position"):
        PatchPrompt(size=2, position="bottom_right")
    for cls in (PaddingPrompt, PatchPrompt, OverlayPrompt):
        with pytest.raises(ConfigurationError, match=r"data\.crop_size"):
            bound(cls(), None)


def test_configuration_error_is_a_user_error_and_a_value_error():
    from iqa.errors import UserError

    with pytest.raises(UserError):
        bound(PaddingPrompt(size=N))
    with pytest.raises(ValueError):
        bound(PaddingPrompt(size=N))


# --- ScoringPipeline with a pixel prompt ------------------------------------------------------

def trainable(pipeline: nn.Module) -> set[str]:
    return {name for name, p in pipeline.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("build", [lambda **kw: PaddingPrompt(size=S, **kw),
                                   lambda **kw: PatchPrompt(size=S, **kw),
                                   lambda **kw: OverlayPrompt(**kw)])
def test_pipeline_trains_only_the_prompt(build):
    prompt = build()
    pipeline = ScoringPipeline(TinyModel(), prompt, input_size=N).train()
    names = trainable(pipeline)
    assert names == {f"prompt.{name}" for name, _ in prompt.named_parameters()}
    assert not pipeline.model.training and pipeline.prompt.training  # frozen model stays in eval mode
    pipeline(grey(0.5)).sum().backward()
    assert all(p.grad is not None for p in prompt.parameters())
    assert all(p.grad is None for p in pipeline.model.parameters())


def test_pipeline_with_tune_head_trains_the_prompt_and_the_head():
    prompt = PaddingPrompt(size=S, tune_head=True)
    pipeline = ScoringPipeline(TinyModel(), prompt, input_size=N).train()
    expected = {f"prompt.{name}" for name in ("top", "bottom", "left", "right")}
    expected |= {f"model.head.{name}" for name, _ in pipeline.model.head.named_parameters()}
    assert trainable(pipeline) == expected
    assert not any(p.requires_grad for p in pipeline.model.body.parameters())
    pipeline(grey(0.5)).sum().backward()
    assert all(p.grad is not None for p in pipeline.model.head.parameters())
    assert all(p.grad is None for p in pipeline.model.body.parameters())


def test_pipeline_without_freeze_model_trains_everything():
    pipeline = ScoringPipeline(TinyModel(), OverlayPrompt(freeze_model=False), input_size=N)
    assert trainable(pipeline) == {name for name, _ in pipeline.named_parameters()}
    assert pipeline.train().model.training


def test_pipeline_applies_the_prompt_before_normalisation():
    model = TinyModel()
    seen = {}
    model.register_forward_pre_hook(lambda module, args: seen.setdefault("input", args[0].clone()))
    pipeline = ScoringPipeline(model, PatchPrompt(size=S, position="top_left"), input_size=N).eval()
    prompt = set_prompt_value(pipeline.prompt, 0.25)
    pipeline(grey(0.5))
    mean, std = torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)
    expected = (prompt(grey(0.5)) - mean) / std
    assert torch.allclose(seen["input"], expected)


def test_pipeline_builds_the_prompt_for_its_input_size_and_refuses_no_crop_size():
    pipeline = ScoringPipeline(TinyModel(), OverlayPrompt(), input_size=32)
    assert pipeline.prompt.prompt_image().shape == (3, 32, 32)
    assert pipeline(grey(0.5, size=32)).shape == (2,)
    with pytest.raises(ConfigurationError, match=r"data\.crop_size is null"):
        ScoringPipeline(TinyModel(), OverlayPrompt(), input_size=None)
