"""Tiny random vision-language models saved as local folders, with a tokenizer that knows the
rating words: what the visual-prompt tests, smoke runs and benchmarks load instead of a 7B
download (as timm ships ``test_*`` models). Nothing here is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from iqa.models.mplug_owl2 import MplugOwl2Config, MplugOwl2ForCausalLM

RATING_WORDS = ("good", "fine", "poor", "bad", "high", "low", "excellent", "fair")
PROMPT_WORDS = ("USER:", "ASSISTANT:", "Rate", "the", "technical", "quality", "of", "image.", "How", "would",
                "you", "rate", "this", "image?", "The", "is")
MPLUG_CONFIG = {  # mPLUG-Owl2 (LLaMA-2) with a 28² vision tower and 5 visual tokens
    "model_type": "mplug_owl2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
    "max_position_embeddings": 128, "bos_token_id": 1, "eos_token_id": 2,
    "visual_config": {
        "visual_model": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        "visual_abstractor": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                              "intermediate_size": 32, "num_learnable_queries": 4, "encoder_hidden_size": 16,
                              "grid_size": 2},
    },
}


def save_word_tokenizer(folder: Path, extra_words: tuple[str, ...] = ()):
    """A word-level SentencePiece-style tokenizer ("▁word" pieces; unknown words → <unk>)."""
    words = dict.fromkeys(PROMPT_WORDS + RATING_WORDS + extra_words)
    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", *(f"▁{w}" for w in words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<unk>")
    tokenizer.save_pretrained(folder)
    return tokenizer


def save_tiny_mplug_owl2(folder: Path, seed: int = 0) -> Path:
    """A random tiny mPLUG-Owl2 as an official folder: config.json, model.safetensors, tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = MplugOwl2ForCausalLM(MplugOwl2Config.from_dict(MPLUG_CONFIG))
    (folder / "config.json").write_text(json.dumps(MPLUG_CONFIG))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    save_word_tokenizer(folder)
    return folder


CHAT_TEMPLATE = (  # LLaVA-1.5's layout: "USER: <image>\n{question} ASSISTANT:"
    "{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def save_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """A random tiny LLaVA (CLIP vision tower at 28², LLaMA) with its processor, saved with
    ``save_pretrained`` as a transformers image-text-to-text folder."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = save_word_tokenizer(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=28, patch_size=14),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                max_position_embeddings=128),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
