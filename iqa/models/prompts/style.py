"""Feature-level prompts that modulate the stage outputs of a frozen hierarchical backbone.

:class:`StylePrompt` is QMamba's StylePrompt tuning (Guan et al., Sec. 3.2): per stage, N
learnable prompt components are mixed with weights predicted from the stage's features, and the
fused prompt sets the channels' mean and variance ("style"). :class:`ScaleShiftPrompt` is the
SSF baseline of the paper's Table 4 (Lian et al., NeurIPS 2022) at the same stage outputs.

The backbone calls them as ``stage_hook(i, features)`` and they start as the identity, so the
frozen model is unchanged at step 0. :meth:`FeaturePrompt.bind` builds one module per stage of
the model's ``stage_channels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from iqa.models.base import ConfigurationError, IQAModel
from iqa.models.prompts.base import Prompt

if TYPE_CHECKING:
    from iqa.models.backbones.vmamba import StageHook


class FeaturePrompt(Prompt):
    """Base class: per-stage modules built by :meth:`bind`, applied by :meth:`forward`.

    Args:
        tune_head: also train the model's regression head ("StylePrompt & R" in Table 4).
        freeze_model: freeze the backbone (always, for a prompt).
    """

    def __init__(self, tune_head: bool = False, freeze_model: bool = True) -> None:
        super().__init__(freeze_model, tune_head)
        self.stages = nn.ModuleList()

    def bind(self, model: IQAModel, input_size: int | None) -> None:
        """One module per stage of ``model.stage_channels``; refused for a model without stages."""
        if model.stage_channels is None:
            raise ConfigurationError(
                f"prompt={type(self).__name__} modulates the stages of a hierarchical backbone, but "
                f"model={type(model).__name__} exposes no stages; use model=qmamba")
        self.build(model.stage_channels)

    def build(self, stage_channels: Sequence[int]) -> None:
        """Build one module per stage for these channel widths."""
        self.stages = nn.ModuleList(self.stage_module(i, c) for i, c in enumerate(stage_channels))

    def stage_module(self, index: int, channels: int) -> nn.Module:
        raise NotImplementedError

    @property
    def stage_hook(self) -> StageHook:
        """This prompt: ``self(i, features)`` modulates stage ``i``."""
        return self

    def forward(self, stage: int, features: torch.Tensor) -> torch.Tensor:
        return self.stages[stage](features)


class StyleModulation(nn.Module):
    """One stage of :class:`StylePrompt`.

    ``weights = softmax(W_w · GAP(x))`` over N components ``P_n`` (prompt_dim × s × s); fused
    prompt ``P = Σ weights_n P_n``; ``W_a`` aligns it to the channel width; ``γ, β = W_γβ(P)``
    (zero-initialised); ``out = x + γ ⊙ (x − μ) + β``: the channel mean moves by β and the
    standard deviation scales by 1 + γ (μ: each channel's spatial mean). An s × s prompt gives
    spatially varying γ, β, resized to the feature map.
    """

    def __init__(self, channels: int, n_components: int, spatial_size: int, prompt_dim: int) -> None:
        super().__init__()
        self.components = nn.Parameter(torch.randn(n_components, prompt_dim, spatial_size, spatial_size) * 0.02)
        self.weighting = nn.Linear(channels, n_components)
        self.align = nn.Conv2d(prompt_dim, channels, 1)
        self.affine = nn.Conv2d(channels, 2 * channels, 1)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        weights = self.weighting(mean.flatten(1)).softmax(dim=-1)  # (B, N)
        fused = torch.einsum("bn,nchw->bchw", weights, self.components.to(x.dtype))
        scale, shift = self.affine(self.align(fused)).chunk(2, dim=1)
        if scale.shape[-2:] != x.shape[-2:] and scale.shape[-1] > 1:
            scale, shift = (F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)
                            for t in (scale, shift))
        return x + scale * (x - mean) + shift


class StylePrompt(FeaturePrompt):
    """QMamba's StylePrompt (Sec. 3.2): a :class:`StyleModulation` after every stage.

    3C² + 15C + 6 parameters per stage of width C (N = 6, 1×1): 4,206,744 at LQMamba-B against
    the paper's 3.83M (Table 3); docs/qmamba.md compares the counts.

    Args:
        n_components: N prompt components per stage (6 in the paper; A.9 ablates 1–10).
        spatial_size: side of each component, one int for all stages or one per stage
            (1 by default; 7, 14, 28 in A.10).
        prompt_dim: channels of a component; ``None``: the stage's width.
        tune_head, freeze_model: see :class:`FeaturePrompt`.
    """

    def __init__(self, n_components: int = 6, spatial_size: int | Sequence[int] = 1, prompt_dim: int | None = None,
                 tune_head: bool = False, freeze_model: bool = True) -> None:
        super().__init__(tune_head, freeze_model)
        if n_components < 1:
            raise ConfigurationError(f"prompt.n_components must be >= 1, got {n_components}")
        self.n_components = n_components
        self.spatial_size = spatial_size
        self.prompt_dim = prompt_dim

    def build(self, stage_channels: Sequence[int]) -> None:
        if not isinstance(self.spatial_size, int) and len(self.spatial_size) != len(stage_channels):
            raise ConfigurationError(f"prompt.spatial_size={list(self.spatial_size)} needs one side per stage "
                                     f"({len(stage_channels)} stages) or a single int")
        super().build(stage_channels)

    def stage_module(self, index: int, channels: int) -> nn.Module:
        side = self.spatial_size if isinstance(self.spatial_size, int) else self.spatial_size[index]
        return StyleModulation(channels, self.n_components, side, self.prompt_dim or channels)


class ChannelScaleShift(nn.Module):
    """``x · (1 + γ) + β`` per channel, γ = β = 0 at initialisation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(channels, 1, 1))
        self.shift = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 + self.scale) + self.shift


class ScaleShiftPrompt(FeaturePrompt):
    """SSF at every stage output (Table 4's "SSF"): 2·C numbers per stage."""

    def stage_module(self, index: int, channels: int) -> nn.Module:
        return ChannelScaleShift(channels)
