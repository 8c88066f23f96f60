"""Visual prompts on a frozen mPLUG-Owl2: the rating-word readout, the prompt text, and a tiny
random model loaded from an official-style folder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from iqa.models.base import CLIP_MEAN, IMAGENET_MEAN, ConfigurationError
from iqa.models.methods.quality_readout import (
    QualityReadout,
    mplug_owl2_text,
    mplug_turn,
    parse_score_type,
    tokenize_with_image,
)
from iqa.models.mplug_owl2 import IMAGE_TOKEN_INDEX
from iqa.models.pipeline import ScoringPipeline
from iqa.models.prompts import PaddingPrompt
from iqa.models.weights import WeightsMismatchError
from iqa.registry import create_model

# The texts the golden outputs (and the token ids below) were made with: the visual-prompt paper's
# instruction and Q-Align's scoring prompt, in mPLUG-Owl2's conversation template.
RATE_PROMPT = "USER: <|image|>Rate the technical quality of the image. ASSISTANT:"
QALIGN_PROMPT = "USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the image is"
OFFICIAL_SCORE_TYPES = ["good_vs_bad", "good_vs_poor", "fine_vs_bad", "high_vs_low", "good+high_vs_poor+low",
                        "good+fine_vs_poor+bad", "good+high+fine_vs_poor+low+bad"]


@pytest.fixture(scope="module")
def tokenizer(tiny_vlm_dir):
    return AutoTokenizer.from_pretrained(str(tiny_vlm_dir / "mplug_owl2"), local_files_only=True)


@pytest.fixture(scope="module")
def model(tiny_vlm_dir):
    return create_model("vp_mplug", hf_folder=str(tiny_vlm_dir / "mplug_owl2"), dtype="float32")


@pytest.mark.parametrize("score_type", OFFICIAL_SCORE_TYPES)
def test_official_score_types_parse(score_type):
    positive, negative = (side.split("+") for side in score_type.split("_vs_"))
    assert parse_score_type(score_type) == {**dict.fromkeys(positive, 1.0), **dict.fromkeys(negative, 0.0)}


@pytest.mark.parametrize("bad", ["good", "good_vs_", "good_vs_bad_vs_poor", "good+_vs_bad", "good_vs_good"])
def test_malformed_score_type_names_the_key(bad):
    with pytest.raises(ConfigurationError, match="model.quality_score_type"):
        parse_score_type(bad)


def test_readout_equals_the_papers_formula(tokenizer):
    readout = QualityReadout("good+fine_vs_poor+bad", tokenizer)
    logits = torch.randn(5, len(tokenizer.get_vocab())) * 3
    ids = {w: tokenizer.convert_tokens_to_ids(f"▁{w}") for w in ("good", "fine", "poor", "bad")}
    positive = logits[:, ids["good"]].exp() + logits[:, ids["fine"]].exp()
    negative = logits[:, ids["poor"]].exp() + logits[:, ids["bad"]].exp()
    torch.testing.assert_close(readout(logits), positive / (positive + negative))


def test_qalign5_is_the_expected_level(tokenizer):
    readout = QualityReadout("qalign5", tokenizer)
    logits = torch.full((2, len(tokenizer.get_vocab())), -1e4)
    logits[0, tokenizer.convert_tokens_to_ids("▁excellent")] = 0.0  # certain "excellent" → 1
    logits[1, tokenizer.convert_tokens_to_ids("▁fair")] = 0.0  # an even split of fair and poor → 0.375
    logits[1, tokenizer.convert_tokens_to_ids("▁poor")] = 0.0
    torch.testing.assert_close(readout(logits), torch.tensor([1.0, 0.375]))


@pytest.mark.parametrize("word", ["superb", "very good"])
def test_word_that_is_not_one_token_is_a_configuration_error(tokenizer, word):
    with pytest.raises(ConfigurationError, match=f"rating word '{word}'.*single tokens"):
        QualityReadout(f"{word}_vs_bad", tokenizer)


def test_prompt_tokens_place_the_image_after_user(tokenizer):
    ids = tokenize_with_image(tokenizer, RATE_PROMPT, IMAGE_TOKEN_INDEX)
    tokens = tokenizer.convert_ids_to_tokens([i for i in ids if i >= 0])
    assert ids[0] == tokenizer.bos_token_id and ids.count(IMAGE_TOKEN_INDEX) == 1
    assert tokens[1] == "▁USER:" and tokens[-1] == "▁ASSISTANT:"
    assert ids.index(IMAGE_TOKEN_INDEX) < tokens.index("▁Rate") + 1
    with pytest.raises(ConfigurationError, match="exactly once"):
        tokenize_with_image(tokenizer, "no image here", IMAGE_TOKEN_INDEX)


def test_qalign_prompt_is_the_default_for_qalign5(tiny_vlm_dir, tokenizer):
    model = create_model("vp_mplug", hf_folder=str(tiny_vlm_dir / "mplug_owl2"), dtype="float32",
                         quality_score_type="qalign5", normalize="clip")
    assert model.input_ids[0].tolist() == tokenize_with_image(tokenizer, QALIGN_PROMPT, IMAGE_TOKEN_INDEX)
    assert model.mean == CLIP_MEAN


def test_only_the_prompt_receives_gradients(model):
    pipeline = ScoringPipeline(model, PaddingPrompt(size=4), input_size=28).train()
    assert model.mean == IMAGENET_MEAN and not model.backbone.training  # frozen model stays in eval mode
    scores = pipeline(torch.rand(3, 3, 28, 28))
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    scores.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pipeline.prompt.parameters())
    assert not any(p.requires_grad or p.grad is not None for p in model.parameters())


def test_wrong_weight_key_names_the_key(tiny_vlm_dir, tmp_path):
    folder = tmp_path / "renamed"
    folder.mkdir()
    for file in (tiny_vlm_dir / "mplug_owl2").iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    state = load_file(folder / "model.safetensors")
    state["model.norm.weight_renamed"] = state.pop("model.norm.weight")
    save_file(state, folder / "model.safetensors")
    with pytest.raises(WeightsMismatchError, match="model.norm.weight"):
        create_model("vp_mplug", hf_folder=str(folder), dtype="float32")


def test_missing_folder_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="model.hf_folder"):
        create_model("vp_mplug", hf_folder=None)


def test_a_folder_in_the_hf_cache_is_found_by_its_id(tiny_vlm_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tmp_path / "models--org--tiny-owl2"
    (repo / "snapshots").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").symlink_to(tiny_vlm_dir / "mplug_owl2", target_is_directory=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    model = create_model("vp_mplug", hf_folder="org/tiny-owl2", dtype="float32")
    assert model.input_ids.shape[1] > 1


@pytest.mark.parametrize(("score_type", "golden"), [("good+fine_vs_poor+bad", RATE_PROMPT), ("qalign5", QALIGN_PROMPT)])
def test_default_question_and_answer_prefix_give_the_golden_text(score_type, golden):
    assert mplug_owl2_text(*mplug_turn(score_type)) == golden


def test_question_and_answer_prefix_build_the_text(tiny_vlm_dir, tokenizer):
    model = create_model("vp_mplug", hf_folder=str(tiny_vlm_dir / "mplug_owl2"), dtype="float32",
                         question="<|image|>How good is it?", answer_prefix="It is")
    text = "USER: <|image|>How good is it? ASSISTANT: It is"
    assert model.input_ids[0].tolist() == tokenize_with_image(tokenizer, text, IMAGE_TOKEN_INDEX)
    with pytest.raises(ConfigurationError, match=r"model\.question must contain <\|image\|> exactly once"):
        create_model("vp_mplug", hf_folder=str(tiny_vlm_dir / "mplug_owl2"), dtype="float32", question="Rate it.")


def test_saved_checkpoint_holds_only_the_prompt(compose_train, tiny_vlm_dir):
    from iqa.checkpoint import read_checkpoint
    from iqa.experiment import train

    cfg = compose_train("model=vp_mplug", f"model.hf_folder={tiny_vlm_dir / 'mplug_owl2'}", "model.dtype=float32",
                        "prompt=padding", "prompt.size=4", "data.crop_size=28", "data.n_test_crops=1",
                        "data.train_crop_mode=center", "data.n_train_crops=1", "data.test_crop_mode=center",
                        "data.resize_shorter=28",
                        "optimizer.name=sgd", "optimizer.lr=60", "scheduler.name=constant")
    train(cfg)
    checkpoint = read_checkpoint(f"{cfg.paths.output_dir}/checkpoints/last.ckpt")
    assert set(checkpoint["state_dict"]) == {f"net.prompt.{side}" for side in ("top", "bottom", "left", "right")}


@pytest.mark.parametrize("dataset", ["kadid", "koniq", "agiqa"])
def test_official_recipe_presets_run(compose_train, tiny_vlm_dir, dataset):
    from iqa.experiment import train

    cfg = compose_train(f"experiment=vp_mplug_{dataset}", "model=vp_mplug", "data=synthetic", "trainer=cpu",
                        "trainer.precision=32-true",
                        f"model.hf_folder={tiny_vlm_dir / 'mplug_owl2'}", "model.dtype=float32", "prompt.size=4",
                        "data.crop_size=28", "data.resize_shorter=28", "data.n_test_crops=1", "data.batch_size=2",
                        "data.eval_batch_size=2",
                        "data.num_workers=0", "trainer.fast_dev_run=true")
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.scheduler.name) == ("sgd", 60, 0.0,
                                                                                                   "constant")
    assert cfg.callbacks.checkpoint.monitor == cfg.callbacks.early_stopping.monitor == "val/srcc_plcc"
    assert cfg.trainer.gradient_clip_val == 1.0 and cfg.data.train_crop_mode == "center"
    assert train(cfg)["test/n_images"] > 0
