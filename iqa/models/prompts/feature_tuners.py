"""The other stage-level tuners of QMamba's Table 4, beside StylePrompt and SSF (style.py):
a cross-attention prompt and a convolution prompt. Both add a zero-initialised residual to each
stage output of the frozen backbone, so the model is unchanged at step 0."""

from __future__ import annotations

import torch
import torch.nn as nn

from iqa.models.prompts.style import FeaturePrompt


class PromptCrossAttention(nn.Module):
    """``x + W_o · softmax(W_q x (W_k P)ᵀ / √C) W_v P`` with ``n`` learnable prompt tokens P."""

    def __init__(self, channels: int, n_tokens: int) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(n_tokens, channels) * 0.02)
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        queries = self.query(x.flatten(2).transpose(1, 2))  # (B, HW, C)
        tokens = self.tokens.to(x.dtype)
        attended = nn.functional.scaled_dot_product_attention(queries, self.key(tokens)[None], self.value(tokens)[None])
        return x + self.out(attended).transpose(1, 2).reshape(batch, channels, height, width)


class PromptConvolution(nn.Module):
    """``x + conv3×3(x)``, the convolution zero-initialised."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class CrossAttentionPrompt(FeaturePrompt):
    """Table 4's "cross-attention prompt": each stage's features attend to ``n_tokens`` prompts."""

    def __init__(self, n_tokens: int = 6, tune_head: bool = False, freeze_model: bool = True) -> None:
        super().__init__(tune_head, freeze_model)
        self.n_tokens = n_tokens

    def stage_module(self, index: int, channels: int) -> nn.Module:
        return PromptCrossAttention(channels, self.n_tokens)


class ConvPrompt(FeaturePrompt):
    """Table 4's "conv prompt": a residual 3×3 convolution after each stage."""

    def stage_module(self, index: int, channels: int) -> nn.Module:
        return PromptConvolution(channels)
