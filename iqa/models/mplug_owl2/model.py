"""mPLUG-Owl2 (Ye et al., "mPLUG-Owl2: Revolutionizing Multi-modal Large Language Model with
Modality Collaboration", CVPR 2024), LLaMA-2 variant, as a plain PyTorch module.

image → ViT (``vision_model``) → visual abstractor (``visual_abstractor``) → visual tokens
spliced into the text at the image placeholder → modality-adaptive LLaMA-2 → ``lm_head`` logits.
Attribute names reproduce the official state-dict keys (``model.*``, ``lm_head.*``), so official
checkpoints load strictly (see :mod:`iqa.models.mplug_owl2.loading`). Only the single forward
pass used to score images is implemented: no KV cache, no generation, no loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding

from iqa.models.mplug_owl2.abstractor import VisualAbstractor
from iqa.models.mplug_owl2.checkpointing import run_layer
from iqa.models.mplug_owl2.configuration import MplugOwl2Config
from iqa.models.mplug_owl2.language import ModalityAdaptiveDecoderLayer
from iqa.models.mplug_owl2.splicing import splice_visual_tokens
from iqa.models.mplug_owl2.vision import VisionTransformer


@dataclass
class MplugOwl2Output:
    """Over the spliced sequence of length T: ``last_hidden_state`` (B, T, D) after the final norm;
    ``modality`` (B, T), 1 on visual tokens; ``attention_mask`` (B, T); ``hidden_states`` (when
    asked) the decoder input and each decoder layer's output (before the final norm); ``logits``
    (B, T, vocab) from the causal-LM head."""

    last_hidden_state: torch.Tensor
    modality: torch.Tensor
    attention_mask: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    logits: torch.Tensor | None = None


class MplugOwl2Model(nn.Module):
    """The official ``MPLUGOwl2LlamaModel``: LLaMA embeddings, decoder and final norm, plus the
    vision encoder and abstractor."""

    def __init__(self, config: MplugOwl2Config) -> None:
        super().__init__()
        text = config.text
        self.config = config
        self.embed_tokens = nn.Embedding(text.vocab_size, text.hidden_size)
        self.layers = nn.ModuleList(ModalityAdaptiveDecoderLayer(text) for _ in range(text.num_hidden_layers))
        self.norm = LlamaRMSNorm(text.hidden_size, eps=text.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(text)  # no checkpoint keys: its table is computed
        self.vision_model = VisionTransformer(config.vision)
        self.visual_abstractor = VisualAbstractor(config.abstractor, text.hidden_size)
        self.gradient_checkpointing = False

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, S, S) → visual tokens (B, queries + 1, text width)."""
        images = images.to(self.vision_model.embeddings.patch_embed.weight.dtype)
        return self.visual_abstractor(self.vision_model(images))

    def forward(self, input_ids: torch.Tensor, images: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False) -> MplugOwl2Output:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        visual = None if images is None else self.encode_images(images)
        text_embeds = self.embed_tokens(input_ids.clamp(min=0))  # placeholders (< 0) are replaced below
        hidden, modality, attention_mask = splice_visual_tokens(text_embeds, input_ids, attention_mask, visual)

        position_ids = torch.arange(hidden.shape[1], device=hidden.device)[None]
        mask = create_causal_mask(config=self.config.text, inputs_embeds=hidden, attention_mask=attention_mask,
                                  past_key_values=None, position_ids=position_ids)
        rope = self.rotary_emb(hidden, position_ids)
        states = [hidden]
        for layer in self.layers:
            hidden = run_layer(layer, hidden, modality, mask, rope, checkpointed=self.gradient_checkpointing)
            states.append(hidden)
        return MplugOwl2Output(self.norm(hidden), modality, attention_mask,
                               tuple(states) if output_hidden_states else None)


class MplugOwl2ForCausalLM(nn.Module):
    """The official ``MPLUGOwl2LlamaForCausalLM``: :class:`MplugOwl2Model` and the ``lm_head``.

    ``model(input_ids=..., images=..., attention_mask=...).logits`` equals the official forward's
    logits. ``input_ids`` contain ``-200`` where an image goes.
    """

    def __init__(self, config: MplugOwl2Config) -> None:
        super().__init__()
        self.config = config
        self.model = MplugOwl2Model(config)
        self.lm_head = nn.Linear(config.text.hidden_size, config.text.vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor, images: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False) -> MplugOwl2Output:
        output = self.model(input_ids, images, attention_mask, output_hidden_states)
        return replace(output, logits=self.lm_head(output.last_hidden_state))

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute the layers of the vision encoder, abstractor and LLM in backward instead of
        storing their activations (for training e.g. a pixel prompt through the frozen model)."""
        for stack in (self.model, self.model.vision_model.encoder, self.model.visual_abstractor.encoder):
            stack.gradient_checkpointing = enabled
