"""mPLUG-Owl2's visual abstractor (paper §3.1): learnable queries cross-attend to the image tokens
and are projected to the language model's width; a learned ``vit_eos`` token is appended.

Details of the official layer that are easy to get wrong:
* ``norm1`` (queries) and ``normk`` (image tokens) are applied first; keys and values are
  computed from ``[norm1(queries); normk(image)]`` (the queries attend to themselves too);
* fixed MAE sin-cos tables: ``q_pos`` is added to the query input, ``[q_pos; k_pos]`` to the key
  input only — never to the values;
* the residual stream continues from the *normalised* queries:
  ``x' = norm1(x) + out_proj(attn)``, then ``x' + mlp(norm2(x'))``;
* the MLP is SwiGLU with a LayerNorm inside, ``w2(ffn_ln(silu(w1 h) · w3 h))``;
* ``norm1``/``normk``/``norm2`` use eps 1e-5, ``ffn_ln`` the config's eps (1e-6).
Module names mirror the official checkpoint keys (``model.visual_abstractor.*``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import eager_attention_forward

from iqa.models.mplug_owl2.checkpointing import run_layer
from iqa.models.mplug_owl2.configuration import AbstractorConfig

TORCH_LAYER_NORM_EPS = 1e-5


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """MAE's 1-D table ``(len(positions), dim)``: sines in the first half of the channels, cosines in the second."""
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32) / (dim / 2))
    angles = positions.float().flatten()[:, None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d_with_cls(dim: int, grid_size: int) -> torch.Tensor:
    """MAE's 2-D table over a row-major ``grid_size²`` grid (first half of the channels encodes the
    column, second half the row), preceded by an all-zero row for the class token."""
    rows, columns = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    grid = torch.cat([sincos_1d(dim // 2, columns), sincos_1d(dim // 2, rows)], dim=1)
    return torch.cat([torch.zeros(1, dim), grid])


class AbstractorAttention(nn.Module):
    """Multi-head attention of the queries over ``[queries; image tokens]`` with fixed positions."""

    is_causal = False
    num_key_value_groups = 1  # read by the transformers attention functions

    def __init__(self, config: AbstractorConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = width // config.num_attention_heads
        self.scaling = self.head_dim ** -0.5
        self.attend = ALL_ATTENTION_FUNCTIONS.get_interface(config.attn_implementation, eager_attention_forward)
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        # Persistent, as in the official state dict (so the checkpoint's tables are loaded).
        self.register_buffer("q_pos_embed", sincos_1d(width, torch.arange(config.num_learnable_queries)))
        self.register_buffer("k_pos_embed", sincos_2d_with_cls(width, config.grid_size))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``queries`` (B, Q, D) and ``keys`` = [queries; image tokens] (B, Q + N, D), both normalised."""
        q_pos = self.q_pos_embed.to(queries.dtype)
        key_pos = torch.cat([q_pos, self.k_pos_embed.to(queries.dtype)])
        query = self._heads(self.query(queries + q_pos))
        key = self._heads(self.key(keys + key_pos))
        value = self._heads(self.value(keys))
        context, _ = self.attend(self, query, key, value, None, scaling=self.scaling, dropout=0.0)
        return context.flatten(2)


class AbstractorMLP(nn.Module):
    """SwiGLU with a LayerNorm before the down projection."""

    def __init__(self, config: AbstractorConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.w3 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_ln = nn.LayerNorm(config.intermediate_size, eps=config.layer_norm_eps)
        self.w2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.w2(self.ffn_ln(F.silu(self.w1(hidden)) * self.w3(hidden)))


class AbstractorOutput(nn.Module):
    """Attention output projection and MLP, each with a residual connection."""

    def __init__(self, config: AbstractorConfig) -> None:
        super().__init__()
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=TORCH_LAYER_NORM_EPS)
        self.mlp = AbstractorMLP(config)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        hidden = residual + self.out_proj(context)
        return hidden + self.mlp(self.norm2(hidden))


class AbstractorCrossAttention(nn.Module):
    def __init__(self, config: AbstractorConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=TORCH_LAYER_NORM_EPS)
        self.normk = nn.LayerNorm(config.hidden_size, eps=TORCH_LAYER_NORM_EPS)
        self.attention = AbstractorAttention(config)
        self.output = AbstractorOutput(config)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        queries = self.norm1(queries)
        keys = torch.cat([queries, self.normk(image)], dim=1)
        return self.output(self.attention(queries, keys), residual=queries)


class AbstractorLayer(nn.Module):
    """One abstractor layer; the extra ``crossattention`` level only mirrors the official key names."""

    def __init__(self, config: AbstractorConfig) -> None:
        super().__init__()
        self.crossattention = AbstractorCrossAttention(config)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.crossattention(queries, image)


class AbstractorEncoder(nn.Module):
    def __init__(self, config: AbstractorConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(AbstractorLayer(config) for _ in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            queries = run_layer(layer, queries, image, checkpointed=self.gradient_checkpointing)
        return queries


class VisualAbstractor(nn.Module):
    """Image tokens ``(B, N, D)`` → visual tokens for the LLM ``(B, Q + 1, text_width)``:
    ``Q`` projected queries, then ``vit_eos``. There is no final LayerNorm."""

    def __init__(self, config: AbstractorConfig, text_width: int) -> None:
        super().__init__()
        self.query_embeds = nn.Parameter(torch.randn(1, config.num_learnable_queries, config.hidden_size))
        self.encoder = AbstractorEncoder(config)
        self.visual_fc = nn.Linear(config.hidden_size, text_width)
        self.vit_eos = nn.Parameter(torch.randn(1, 1, text_width))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        queries = self.encoder(self.query_embeds.expand(len(image), -1, -1), image)
        return torch.cat([self.visual_fc(queries), self.vit_eos.expand(len(image), -1, -1)], dim=1)
