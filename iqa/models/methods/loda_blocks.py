"""The trainable parts of LoDa (Xu et al., CVPR 2024, Sec. 3): the local distortion
extractor, the per-block injector, and the cosine head."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp

from iqa.errors import ConfigurationError


def distortion_branch(in_channels: int, latent_dim: int, grid_size: int) -> nn.Sequential:
    """One CNN stage → ``grid_size²`` tokens of width ``latent_dim`` (eq. 1):
    Conv1×1 (+bias) → GELU → Conv3×3 (no bias) → adaptive average pool."""
    return nn.Sequential(OrderedDict(
        reduce=nn.Conv2d(in_channels, latent_dim, kernel_size=1),
        act=nn.GELU(),
        local=nn.Conv2d(latent_dim, latent_dim, kernel_size=3, padding=1, bias=False),
        pool=nn.AdaptiveAvgPool2d(grid_size),
    ))


class LocalDistortionExtractor(nn.Module):
    """Multi-scale CNN feature maps → one sequence of local distortion tokens (eq. 1).

    Each stage gives ``grid_size²`` tokens in row-major order; stages are concatenated
    from fine to coarse, e.g. 4 × 49 = 196 tokens of width ``latent_dim``.
    """

    def __init__(self, in_channels: list[int], latent_dim: int, grid_size: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(distortion_branch(c, latent_dim, grid_size) for c in in_channels)

    def forward(self, feature_maps: list[torch.Tensor]) -> torch.Tensor:
        tokens = [branch(f).flatten(2).transpose(1, 2) for branch, f in zip(self.branches, feature_maps, strict=True)]
        return torch.cat(tokens, dim=1)


class CrossAttention(nn.Module):
    """Multi-head attention of ``queries`` over ``context`` (eq. 3); no q/kv bias."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigurationError(f"model.latent_dim={dim} must be divisible by model.attention_heads={num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)  # output rows: keys, then values
        self.proj = nn.Linear(dim, dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, self.num_heads, -1).transpose(1, 2)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        keys, values = self.kv(context).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(
            self._split_heads(self.q(queries)), self._split_heads(keys), self._split_heads(values)
        )
        return self.proj(attended.transpose(1, 2).flatten(2))


class DistortionInjector(nn.Module):
    """What one ViT block receives from the distortion tokens (eqs. 2–4), before scaling:
    down-project the ViT tokens (CLS included), let them attend to the distortion tokens
    (residual with the query), up-project back to the ViT width."""

    def __init__(self, embed_dim: int, latent_dim: int, num_heads: int) -> None:
        super().__init__()
        self.down = Mlp(embed_dim, hidden_features=latent_dim, out_features=latent_dim)
        self.cross_attn = CrossAttention(latent_dim, num_heads)
        self.up = Mlp(latent_dim, hidden_features=embed_dim, out_features=embed_dim)

    def forward(self, vit_tokens: torch.Tensor, distortion_tokens: torch.Tensor) -> torch.Tensor:
        queries = self.down(vit_tokens)
        return self.up(queries + self.cross_attn(queries, distortion_tokens))


class CosineHead(nn.Module):
    """Bias-free linear layer on unit vectors: the cosine between the feature and each
    weight column, so scores lie in [-1, 1] (the official ``NormedLinear``).

    ``weight`` is stored ``(in_features, out_features)`` as in the official code, with
    unit-norm columns at initialisation (the norm sets the gradient scale).
    """

    def __init__(self, in_features: int, out_features: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(F.normalize(torch.empty(in_features, out_features).uniform_(-1, 1), dim=0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=0)
