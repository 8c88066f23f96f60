"""Configuration of mPLUG-Owl2 (Ye et al. 2024), read from the official ``config.json``.

The official file is a LLaMA config (the language model) with one extra entry,
``visual_config``, holding ``visual_model`` (the ViT) and ``visual_abstractor``. We keep the
language part as a transformers :class:`~transformers.LlamaConfig` (so LLaMA building blocks
accept it) and the two visual parts as small frozen dataclasses with only the fields the
forward pass reads. Options the official code never exercises are rejected with a clear error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from transformers import LlamaConfig

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")

# Fields of the official (transformers 4.31) LLaMA config that define the language model.
LLAMA_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "rope_scaling", "attention_bias", "bos_token_id", "eos_token_id", "pad_token_id",
)


@dataclass(frozen=True)
class VisionConfig:
    """The ViT-L/14-style image encoder (official ``MplugOwlVisionConfig``; defaults are its own)."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    image_size: int = 448
    patch_size: int = 14
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-6
    use_post_layernorm: bool = True
    attn_implementation: str = "sdpa"

    @property
    def num_tokens(self) -> int:
        """Patch tokens plus the class token."""
        return (self.image_size // self.patch_size) ** 2 + 1


@dataclass(frozen=True)
class AbstractorConfig:
    """The visual abstractor (official ``MplugOwlVisualAbstractorConfig``; defaults are its own).

    ``layer_norm_eps`` is used by the MLP's ``ffn_ln`` only: the official ``norm1``, ``normk``
    and ``norm2`` are ``nn.LayerNorm`` with PyTorch's default eps 1e-5.
    """

    hidden_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 16
    intermediate_size: int = 2816
    num_learnable_queries: int = 64
    grid_size: int = 32
    layer_norm_eps: float = 1e-6
    attn_implementation: str = "sdpa"


@dataclass(frozen=True)
class MplugOwl2Config:
    """The three parts of mPLUG-Owl2: ``text`` (modality-adaptive LLaMA), ``vision``, ``abstractor``."""

    text: LlamaConfig
    vision: VisionConfig
    abstractor: AbstractorConfig

    @classmethod
    def from_dict(cls, config: dict, attn_implementation: str = "sdpa") -> MplugOwl2Config:
        """Parse an official ``config.json`` dict; ``attn_implementation`` is ``"eager"`` or ``"sdpa"``."""
        if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be one of {ATTENTION_IMPLEMENTATIONS}, "
                             f"got {attn_implementation!r}")
        if config.get("model_type") != "mplug_owl2":
            raise ValueError(f"expected model_type 'mplug_owl2' (the LLaMA-2 variant), "
                             f"got {config.get('model_type')!r}")
        visual = config.get("visual_config")
        if visual is None:
            raise ValueError("config has no 'visual_config' entry; not an mPLUG-Owl2 config")
        vision_dict, abstractor_dict = visual["visual_model"], visual["visual_abstractor"]
        _require("visual_model.use_cls_token", vision_dict.get("use_cls_token", True), True)
        _require("visual_abstractor.use_cls_token", abstractor_dict.get("use_cls_token", True), True)
        _require("visual_abstractor.add_v2t_pos_emb", abstractor_dict.get("add_v2t_pos_emb", False), False)

        text = LlamaConfig(**{key: config[key] for key in LLAMA_FIELDS if key in config})
        text._attn_implementation = attn_implementation
        vision = _dataclass_from(VisionConfig, vision_dict, attn_implementation=attn_implementation)
        abstractor = _dataclass_from(AbstractorConfig, abstractor_dict, attn_implementation=attn_implementation)

        if abstractor_dict.get("encoder_hidden_size", abstractor.hidden_size) != abstractor.hidden_size \
                or vision.hidden_size != abstractor.hidden_size:
            raise ValueError("mPLUG-Owl2 needs visual_model.hidden_size == visual_abstractor.hidden_size == "
                             "visual_abstractor.encoder_hidden_size (queries and image tokens share the key input)")
        if abstractor.grid_size ** 2 + 1 != vision.num_tokens:
            raise ValueError(f"visual_abstractor.grid_size={abstractor.grid_size} must equal image_size/patch_size="
                             f"{vision.image_size // vision.patch_size}: its key position table covers the image "
                             "tokens")
        return cls(text=text, vision=vision, abstractor=abstractor)

    @classmethod
    def from_file(cls, path: str | Path, attn_implementation: str = "sdpa") -> MplugOwl2Config:
        """Read an official ``config.json``."""
        return cls.from_dict(json.loads(Path(path).read_text()), attn_implementation)


def _dataclass_from(kind: type, values: dict, **overrides):
    """The dataclass ``kind`` with the fields found in ``values`` (others keep their defaults)."""
    names = {field.name for field in fields(kind)}
    return kind(**{key: value for key, value in values.items() if key in names}, **overrides)


def _require(name: str, value, expected) -> None:
    if value != expected:
        raise ValueError(f"{name}={value!r} is not supported (the released mPLUG-Owl2 uses {expected!r})")
