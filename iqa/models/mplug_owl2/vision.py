"""mPLUG-Owl2's image encoder: a CLIP ViT-L/14-style pre-LayerNorm transformer (paper §3.1).

Differences from a plain CLIP ViT that matter for the official weights:
* the patch embedding has no bias, and a LayerNorm (``pre_layernorm``) follows the embeddings;
* the fused ``query_key_value`` projection is laid out per head: its output reshapes to
  ``[heads, 3, head_dim]`` (q, k, v interleaved inside each head), not ``[3, heads, head_dim]``.
Module names mirror the official checkpoint keys (``model.vision_model.*``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers.activations import ACT2FN
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import eager_attention_forward

from iqa.models.mplug_owl2.checkpointing import run_layer
from iqa.models.mplug_owl2.configuration import VisionConfig

RGB_CHANNELS = 3


class VisionEmbeddings(nn.Module):
    """Patches → tokens, a class token in front, learned positions, then ``pre_layernorm``."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.cls_token = nn.Parameter(torch.randn(1, 1, width))
        self.patch_embed = nn.Conv2d(RGB_CHANNELS, width, config.patch_size, stride=config.patch_size, bias=False)
        self.position_embedding = nn.Parameter(torch.randn(1, config.num_tokens, width))
        self.pre_layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(images), -1, -1), patches], dim=1)
        return self.pre_layernorm(tokens + self.position_embedding)


class VisionAttention(nn.Module):
    """Bidirectional multi-head self-attention with the per-head fused qkv layout."""

    is_causal = False
    num_key_value_groups = 1  # read by the transformers attention functions

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim ** -0.5
        self.attend = ALL_ATTENTION_FUNCTIONS.get_interface(config.attn_implementation, eager_attention_forward)
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        qkv = self.query_key_value(hidden).view(batch, length, self.num_heads, 3, self.head_dim)
        query, key, value = qkv.permute(3, 0, 2, 1, 4)  # each (batch, heads, length, head_dim)
        context, _ = self.attend(self, query, key, value, None, scaling=self.scaling, dropout=0.0)
        return self.dense(context.reshape(batch, length, width))


class VisionMLP(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden)))


class VisionLayer(nn.Module):
    """Pre-LayerNorm block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = VisionAttention(config)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = VisionMLP(config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.self_attn(self.input_layernorm(hidden))
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class VisionEncoder(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(VisionLayer(config) for _ in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden = run_layer(layer, hidden, checkpointed=self.gradient_checkpointing)
        return hidden


class VisionTransformer(nn.Module):
    """Normalised images ``(B, 3, S, S)`` → tokens ``(B, 1 + (S/patch)², width)``, class token first."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.embeddings = VisionEmbeddings(config)
        self.encoder = VisionEncoder(config)
        self.post_layernorm = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                               if config.use_post_layernorm else nn.Identity())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.post_layernorm(self.encoder(self.embeddings(images)))
