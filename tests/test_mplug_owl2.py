"""mPLUG-Owl2 backbone: parity with the official code (golden fixture), the loader, the 7B key
layout derived from the official modules, and input gradients through the frozen model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from iqa.models.mplug_owl2 import (
    IMAGE_TOKEN_INDEX,
    MplugOwl2Config,
    MplugOwl2ForCausalLM,
    load_mplug_owl2,
)
from iqa.models.tiny_vlms import MPLUG_CONFIG
from iqa.models.weights import WeightsMismatchError
from tests.conftest import FIXTURES

FIXTURE = FIXTURES / "mplug_owl2_tiny"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"golden fixture {FIXTURE} is absent")

TINY_CONFIG = MPLUG_CONFIG  # random-weight model for the tests that need no fixture; GQA (4 heads, 2 kv)

# Shaped like the released mplug-owl2-llama2-7b config.json: LLaMA-2-7B fields, training flags,
# and visual_config as the to_dict() of the official vision/abstractor configs with their defaults
# (which the official converter writes). Only the shape-defining values matter here.
_COMMON_DICT = {"return_dict": True, "output_hidden_states": False, "torchscript": False, "torch_dtype": None,
                "architectures": None, "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "transformers_version": "4.32.0"}
REAL_7B_CONFIG = {
    "architectures": ["MPLUGOwl2LlamaForCausalLM"], "model_type": "mplug_owl2", "torch_dtype": "bfloat16",
    "transformers_version": "4.32.0", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu",
    "max_position_embeddings": 4096, "initializer_range": 0.02, "rms_norm_eps": 1e-5, "pretraining_tp": 1,
    "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False, "tie_word_embeddings": False,
    "use_cache": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "image_aspect_ratio": "pad",
    "freeze_vision_model": False, "tune_visual_abstractor": True, "visual_abstractor_lr": None,
    "visual_config": {
        "visual_model": {**_COMMON_DICT, "model_type": "mplug_owl_vision_model", "hidden_size": 1024,
                         "intermediate_size": 4096, "projection_dim": 768, "num_hidden_layers": 24,
                         "num_attention_heads": 16, "num_channels": 3, "image_size": 448, "patch_size": 14,
                         "hidden_act": "quick_gelu", "layer_norm_eps": 1e-6, "attention_dropout": 0.0,
                         "initializer_range": 0.02, "initializer_factor": 1.0, "use_flash_attn": False,
                         "use_post_layernorm": True, "use_cls_token": True},
        "visual_abstractor": {**_COMMON_DICT, "model_type": "mplug_owl_visual_abstract", "add_v2t_pos_emb": False,
                              "use_cls_token": True, "num_learnable_queries": 64, "hidden_size": 1024,
                              "num_hidden_layers": 6, "num_attention_heads": 16, "intermediate_size": 2816,
                              "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
                              "layer_norm_eps": 1e-6, "encoder_hidden_size": 1024, "grid_size": 32},
    },
}


def official_state_dict_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Key → shape of the official ``MPLUGOwl2LlamaForCausalLM(config).state_dict()`` (transformers
    4.31, buffers included), written out from the official modules: modeling_llama2.py
    (MultiwayNetwork k/v/norms), visual_encoder.py, modeling_mplug_owl2.py."""
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name, out_features, in_features, bias=True):
        shapes[f"{name}.weight"] = (out_features, in_features)
        if bias:
            shapes[f"{name}.bias"] = (out_features,)

    def layer_norm(name, width):
        shapes[f"{name}.weight"] = shapes[f"{name}.bias"] = (width,)

    width, ffn, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads = config["num_attention_heads"]
    head_dim, kv_width = width // heads, config["num_key_value_heads"] * (width // heads)
    shapes["model.embed_tokens.weight"] = shapes["lm_head.weight"] = (vocab, width)
    shapes["model.norm.weight"] = (width,)
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}"
        linear(f"{layer}.self_attn.q_proj", width, width, bias=False)
        linear(f"{layer}.self_attn.o_proj", width, width, bias=False)
        shapes[f"{layer}.self_attn.rotary_emb.inv_freq"] = (head_dim // 2,)
        for way in (0, 1):
            linear(f"{layer}.self_attn.k_proj.multiway.{way}", kv_width, width, bias=False)
            linear(f"{layer}.self_attn.v_proj.multiway.{way}", kv_width, width, bias=False)
            shapes[f"{layer}.input_layernorm.multiway.{way}.weight"] = (width,)
            shapes[f"{layer}.post_attention_layernorm.multiway.{way}.weight"] = (width,)
        linear(f"{layer}.mlp.gate_proj", ffn, width, bias=False)
        linear(f"{layer}.mlp.up_proj", ffn, width, bias=False)
        linear(f"{layer}.mlp.down_proj", width, ffn, bias=False)

    vision = config["visual_config"]["visual_model"]
    vw, patch = vision["hidden_size"], vision["patch_size"]
    tokens = (vision["image_size"] // patch) ** 2 + 1
    shapes["model.vision_model.embeddings.cls_token"] = (1, 1, vw)
    shapes["model.vision_model.embeddings.position_embedding"] = (1, tokens, vw)
    linear("model.vision_model.embeddings.patch_embed", vw, 3, bias=False)
    shapes["model.vision_model.embeddings.patch_embed.weight"] += (patch, patch)
    layer_norm("model.vision_model.embeddings.pre_layernorm", vw)
    for i in range(vision["num_hidden_layers"]):
        layer = f"model.vision_model.encoder.layers.{i}"
        linear(f"{layer}.self_attn.query_key_value", 3 * vw, vw)
        linear(f"{layer}.self_attn.dense", vw, vw)
        layer_norm(f"{layer}.input_layernorm", vw)
        layer_norm(f"{layer}.post_attention_layernorm", vw)
        linear(f"{layer}.mlp.fc1", vision["intermediate_size"], vw)
        linear(f"{layer}.mlp.fc2", vw, vision["intermediate_size"])
    layer_norm("model.vision_model.post_layernorm", vw)

    abstractor = config["visual_config"]["visual_abstractor"]
    aw, affn, queries = abstractor["hidden_size"], abstractor["intermediate_size"], abstractor["num_learnable_queries"]
    shapes["model.visual_abstractor.query_embeds"] = (1, queries, aw)
    shapes["model.visual_abstractor.vit_eos"] = (1, 1, width)
    linear("model.visual_abstractor.visual_fc", width, aw)
    for i in range(abstractor["num_hidden_layers"]):
        block = f"model.visual_abstractor.encoder.layers.{i}.crossattention"
        shapes[f"{block}.attention.q_pos_embed"] = (queries, aw)
        shapes[f"{block}.attention.k_pos_embed"] = (abstractor["grid_size"] ** 2 + 1, aw)
        for name in ("query", "key", "value"):
            linear(f"{block}.attention.{name}", aw, aw)
        linear(f"{block}.output.out_proj", aw, aw)
        layer_norm(f"{block}.output.norm2", aw)
        linear(f"{block}.output.mlp.w1", affn, aw)
        linear(f"{block}.output.mlp.w2", aw, affn)
        linear(f"{block}.output.mlp.w3", affn, aw)
        layer_norm(f"{block}.output.mlp.ffn_ln", affn)
        layer_norm(f"{block}.norm1", aw)
        layer_norm(f"{block}.normk", aw)
    return shapes


OFFICIAL_BUFFERS = ("rotary_emb.inv_freq", "q_pos_embed", "k_pos_embed")


def tiny_model(attn_implementation: str = "eager", seed: int = 0) -> MplugOwl2ForCausalLM:
    torch.manual_seed(seed)
    return MplugOwl2ForCausalLM(MplugOwl2Config.from_dict(TINY_CONFIG, attn_implementation)).eval()


def tiny_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 64, (2, 9), generator=generator)
    input_ids[0, 2] = input_ids[1, 5] = IMAGE_TOKEN_INDEX
    images = torch.randn(2, 3, 28, 28, generator=generator)
    return {"input_ids": input_ids, "images": images, "attention_mask": torch.ones_like(input_ids)}


def save_checkpoint(model: MplugOwl2ForCausalLM, config: dict, folder: Path, state: dict | None = None) -> Path:
    """``model`` as an official-style sharded safetensors folder, stale inv_freq buffers included."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    state = dict(model.state_dict()) if state is None else state
    for i in range(config["num_hidden_layers"]):
        state[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = model.model.rotary_emb.inv_freq.clone()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, shard_keys in shards.items():
        save_file({key: state[key].contiguous() for key in shard_keys}, folder / name)
    weight_map = {key: name for name, shard_keys in shards.items() for key in shard_keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


# ----------------------------------------------------------------------------- golden fixture


@pytest.fixture(scope="module")
def fixture_io() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "io.safetensors")


@needs_fixture
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_matches_official_logits_and_intermediates(fixture_io, attn_implementation):
    model = load_mplug_owl2(FIXTURE, attn_implementation=attn_implementation)
    with torch.no_grad():
        output = model(input_ids=fixture_io["input_ids"], images=fixture_io["images"],
                       attention_mask=fixture_io["attention_mask"], output_hidden_states=True)
        vision_embeds = model.model.vision_model(fixture_io["images"])
        abstractor_out = model.model.visual_abstractor(vision_embeds)
    # 1e-6 separates float reordering (< 1e-6) from the smallest real deviation the fixture
    # documents (abstractor LayerNorm eps 1e-6 instead of 1e-5: 2.9e-6 on the logits).
    close = dict(rtol=0, atol=1e-6)
    torch.testing.assert_close(output.logits, fixture_io["logits"], **close)
    torch.testing.assert_close(vision_embeds, fixture_io["vision_embeds"], **close)
    torch.testing.assert_close(abstractor_out, fixture_io["abstractor_out"], **close)
    torch.testing.assert_close(output.hidden_states[0], fixture_io["llm_inputs_embeds"], **close)
    torch.testing.assert_close(torch.stack(output.hidden_states[1:]), fixture_io["llm_layer_outputs"], **close)
    torch.testing.assert_close(output.last_hidden_state, fixture_io["llm_final_hidden"], rtol=0, atol=2e-6)
    assert torch.equal(output.modality, fixture_io["modality_indicators"])
    assert torch.equal(output.attention_mask, fixture_io["llm_attention_mask"])


@needs_fixture
def test_recomputed_position_tables_match_official_buffers():
    state = load_file(FIXTURE / "state_dict.safetensors")
    config = MplugOwl2Config.from_file(FIXTURE / "config.json")
    with torch.device("cpu"):
        fresh = MplugOwl2ForCausalLM(config).state_dict()
    for key in [k for k in state if k.endswith(("q_pos_embed", "k_pos_embed"))]:
        torch.testing.assert_close(fresh[key], state[key], rtol=0, atol=1e-7)


@needs_fixture
def test_official_key_list_generator_matches_fixture_keys():
    """Validates :func:`official_state_dict_shapes` on the keys the official code produced."""
    listed = json.loads((FIXTURE / "keys.json").read_text())["keys"]
    config = json.loads((FIXTURE / "config.json").read_text())
    assert official_state_dict_shapes(config) == {entry["key"]: tuple(entry["shape"]) for entry in listed}


@needs_fixture
def test_bfloat16_load_keeps_rotary_table_in_float32(fixture_io):
    model = load_mplug_owl2(FIXTURE, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32
    with torch.no_grad():
        logits = model(input_ids=fixture_io["input_ids"], images=fixture_io["images"]).logits
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), fixture_io["logits"], rtol=0, atol=0.05)


# ----------------------------------------------------------------------------- real 7B layout


def test_real_7b_config_builds_the_official_key_layout():
    config = MplugOwl2Config.from_dict(REAL_7B_CONFIG)
    with torch.device("meta"):
        model = MplugOwl2ForCausalLM(config)
    official = official_state_dict_shapes(REAL_7B_CONFIG)
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert ours == {key: shape for key, shape in official.items() if not key.endswith("rotary_emb.inv_freq")}
    official_parameters = sum(torch.Size(shape).numel() for key, shape in official.items()
                              if not key.endswith(OFFICIAL_BUFFERS))
    assert sum(p.numel() for p in model.parameters()) == official_parameters
    assert config.vision.num_tokens == 1025 and config.text.rms_norm_eps == 1e-5


def test_config_rejects_inconsistent_grid():
    config = copy.deepcopy(TINY_CONFIG)
    config["visual_config"]["visual_abstractor"]["grid_size"] = 32
    with pytest.raises(ValueError, match="grid_size"):
        MplugOwl2Config.from_dict(config)


# ----------------------------------------------------------------------------- loader


def test_loader_round_trip_sharded_and_bin(tmp_path):
    source = tiny_model()
    inputs = tiny_inputs()
    with torch.no_grad():
        expected = source(**inputs).logits
    folder = save_checkpoint(source, TINY_CONFIG, tmp_path / "sharded")
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    torch.save(source.state_dict(), bin_folder / "pytorch_model.bin")
    for path in (folder, bin_folder):
        loaded = load_mplug_owl2(path, attn_implementation="eager")
        with torch.no_grad():
            assert torch.equal(loaded(**inputs).logits, expected)


def test_loader_names_missing_and_unexpected_keys(tmp_path):
    source = tiny_model()
    state = dict(source.state_dict())
    del state["model.norm.weight"]
    state["model.extra.weight"] = torch.zeros(1)
    folder = save_checkpoint(source, TINY_CONFIG, tmp_path / "broken", state)
    with pytest.raises(WeightsMismatchError, match=r"1 missing \['model.norm.weight'\]") as error:
        load_mplug_owl2(folder)
    assert "1 unexpected ['model.extra.weight']" in str(error.value) and str(folder) in str(error.value)


# ----------------------------------------------------------------------------- splicing


def test_placeholder_count_must_match_images():
    model = tiny_model()
    inputs = tiny_inputs()
    with pytest.raises(ValueError, match="2 image placeholders"):
        model(input_ids=inputs["input_ids"], images=inputs["images"][:1])


def test_right_padding_leaves_valid_positions_unchanged():
    model = tiny_model("sdpa")
    inputs = tiny_inputs()
    short = inputs["input_ids"][1:, :7]
    padded = inputs["input_ids"].clone()
    padded[1, 7:] = 0
    mask = torch.ones_like(padded)
    mask[1, 7:] = 0
    with torch.no_grad():
        alone = model(input_ids=short, images=inputs["images"][1:]).logits[0]
        batched = model(input_ids=padded, images=inputs["images"], attention_mask=mask).logits[1]
    torch.testing.assert_close(batched[: len(alone)], alone, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- gradients


def image_gradient(model: MplugOwl2ForCausalLM, inputs: dict) -> torch.Tensor:
    images = inputs["images"].clone().requires_grad_(True)
    logits = model(input_ids=inputs["input_ids"], images=images, attention_mask=inputs["attention_mask"]).logits
    logits[:, -1].log_softmax(-1)[:, 5].sum().backward()
    return images.grad


def counted(forward, calls: list):
    def wrapper(*args):
        calls.append(forward)
        return forward(*args)
    return wrapper


def test_frozen_model_passes_gradients_to_images_and_checkpointing_matches(monkeypatch):
    model = tiny_model().requires_grad_(False)
    inputs = tiny_inputs()
    plain = image_gradient(model, inputs)
    assert torch.isfinite(plain).all() and plain.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())

    calls = []
    stacks = (model.model.layers, model.model.vision_model.encoder.layers, model.model.visual_abstractor.encoder.layers)
    for stack in stacks:  # count calls of each stack's first layer (hooks do not run in the recomputation)
        monkeypatch.setattr(stack[0], "forward", counted(stack[0].forward, calls))
    model.set_gradient_checkpointing(True)
    checkpointed = image_gradient(model, inputs)
    assert len(calls) == 2 * len(stacks)  # each layer ran again in backward
    torch.testing.assert_close(checkpointed, plain, rtol=1e-6, atol=1e-9)
    assert all(p.grad is None for p in model.parameters())
