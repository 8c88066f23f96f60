"""Parameter-efficient tuners for a frozen timm ViT (the baselines of LoDa's Table 6).

Each function changes a timm ``VisionTransformer`` in place so that the frozen model's output
is unchanged at initialisation, and returns the new (trainable) parameters:

* :func:`add_adapters`: a bottleneck adapter beside every block's MLP (AdaptFormer, Chen et al.
  NeurIPS 2022): ``mlp(h) + up(GELU(down(h)))``, ``up`` zero-initialised.
* :func:`add_lora`: low-rank updates of every block's ``qkv`` projection (LoRA, Hu et al. ICLR
  2022) through the ``peft`` library: ``W x + (α / r) B A x``, ``B`` zero-initialised.
* :func:`add_deep_prompts`: ``n`` learnable tokens appended to the sequence before every block
  and dropped after it (VPT-deep, Jia et al. ECCV 2022). Prompt tokens change the attention, so
  only this tuner alters the output at initialisation (as in VPT).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class ParallelAdapter(nn.Module):
    """``mlp(h) + up(GELU(down(h)))`` around a block's frozen MLP."""

    def __init__(self, mlp: nn.Module, width: int, bottleneck: int) -> None:
        super().__init__()
        self.mlp = mlp
        self.down = nn.Linear(width, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(h) + self.up(self.act(self.down(h)))


class DeepPromptBlock(nn.Module):
    """A frozen transformer block that sees ``n`` extra learnable tokens."""

    def __init__(self, block: nn.Module, width: int, n_tokens: int, patch_size: int) -> None:
        super().__init__()
        self.block = block
        bound = math.sqrt(6.0 / (3 * patch_size**2 + width))  # VPT's uniform initialisation
        self.tokens = nn.Parameter(torch.empty(1, n_tokens, width).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens.expand(len(x), -1, -1).to(x.dtype)
        return self.block(torch.cat([x, tokens], dim=1))[:, : x.shape[1]]


def add_adapters(vit: nn.Module, bottleneck: int) -> list[nn.Parameter]:
    for block in vit.blocks:
        block.mlp = ParallelAdapter(block.mlp, vit.embed_dim, bottleneck)
    return [p for block in vit.blocks for name, p in block.mlp.named_parameters() if not name.startswith("mlp.")]


def add_lora(vit: nn.Module, rank: int, alpha: float) -> list[nn.Parameter]:
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as error:
        raise ImportError("model.tuning=lora needs the peft library: pip install '.[peft]'") from error
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=["qkv"], lora_dropout=0.0), vit)
    return [p for name, p in vit.named_parameters() if "lora_" in name]


def add_deep_prompts(vit: nn.Module, n_tokens: int) -> list[nn.Parameter]:
    patch_size = vit.patch_embed.patch_size[0]
    vit.blocks = nn.Sequential(*(DeepPromptBlock(b, vit.embed_dim, n_tokens, patch_size) for b in vit.blocks))
    return [block.tokens for block in vit.blocks]
