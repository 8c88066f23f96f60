"""Renamed config keys (iqa/config_renames.py): the command line names the new key before Hydra
composes, checkpoints stored with the old keys still load, and README.md#changelog lists them."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from iqa.config_renames import MODEL_TARGETS, RENAMES, check_overrides, upgrade_stored_config
from iqa.errors import ConfigurationError
from tests.conftest import ROOT
from tests.test_cli import run

RATE_PROMPT = "USER: <|image|>Rate the technical quality of the image. ASSISTANT:"


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=loda", "model.vit=base"], "model.vit was renamed to model.size (model=loda: "),
    (["+model.vit=base"], "model.vit was renamed to model.size"),
    (["~model.vit"], "model.vit was renamed to model.size"),
    (["model=qmamba", "model.checkpoint=/w.pth"], "model.checkpoint was renamed to model.weights (model=qmamba|loda"),
    (["model=vp_mplug", "model.checkpoint=/m"], "model.checkpoint was renamed to model.hf_folder (model=vp_mplug"),
    (["model.checkpoint=/x"], "to model.weights (model=qmamba|loda: a full state dict with the official key names) "
                              "or model.hf_folder (model=vp_mplug: "),
    (["model=vp_mllm", "model.hf_id=/m"], "model.hf_id was renamed to model.hf_folder"),
    (["model.prompt_text=x"], "model.prompt_text was renamed to model.question + model.answer_prefix"),
    (["data=koniq", "data.root=/x"], "data.root was renamed to data.roots.<dataset>"),
    (["-m", "prompt=padding", "++prompt.image_size=224"], "prompt.image_size was removed (the pipeline takes the size "
                                                          "from data.crop_size)"),
    (["-m", "model=qmamba", "prompt=styleprompt,linear_probe"], "prompt=linear_probe was renamed to "
                                                                "model.tuning=linear_probe"),
])
def test_an_old_key_names_the_new_one(overrides, message):
    with pytest.raises(ConfigurationError) as excinfo:
        check_overrides(overrides)
    assert message in str(excinfo.value) and str(excinfo.value).endswith("See README.md#changelog.")


@pytest.mark.parametrize("overrides", [
    ["model=loda", "model.size=base", "model.weights=/w"],
    ["model=timm", "model.checkpoint=/x"],  # not a key of that model: Hydra's own error
    ["model=vit", "model.vit_depth=2", "data.roots.koniq=/x", "+data.roots_extra=1"],
    ["prompt=padding", "model.tuning=linear_probe", "--help"],
])
def test_new_keys_pass(overrides):
    check_overrides(overrides)


@pytest.mark.parametrize(("script", "overrides", "new"), [
    ("train.py", ["model.vit=base"], "model.size"),
    ("eval.py", ["model=vp_mllm", "model.hf_id=/models/llava"], "model.hf_folder"),
])
def test_entry_points_exit_2_before_hydra_composes(script, overrides, new):
    done = run(script, *overrides)
    assert done.returncode == 2
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"ConfigurationError: {overrides[-1].split('=')[0]} was renamed to {new} (")
    assert "Traceback" not in done.stderr and "Key not in struct" not in done.stderr


def test_every_model_target_is_its_config_and_readme_lists_every_rename():
    for name, target in MODEL_TARGETS.items():
        assert yaml.safe_load((ROOT / "conf" / "model" / f"{name}.yaml").read_text())["_target_"] == target
    changelog = (ROOT / "README.md").read_text().split("## Changelog", 1)[1]
    rows = [line for line in changelog.splitlines() if line.startswith("| `")]
    for rename in RENAMES:
        new = (rename.new or "removed").split(" + ")
        assert any(f"`{rename.old}`" in row and all(part in row for part in new) for row in rows), rename.old


def old_config(model: dict, prompt: dict | None, data: dict) -> dict:
    """A stored config as train.py wrote it: model and prompt at the top and in the pipeline."""
    return {"model": model, "prompt": prompt, "data": data,
            "module": {"net": {"model": dict(model), "prompt": None if prompt is None else dict(prompt)}}}


def test_a_stored_config_with_old_keys_is_upgraded():
    loda = old_config({"_target_": MODEL_TARGETS["loda"], "vit": "tiny", "checkpoint": None}, None,
                      {"datasets": ["koniq"], "test_on": [], "root": "/k", "roots": {}})
    upgraded = upgrade_stored_config(loda)
    for model in (upgraded["model"], upgraded["module"]["net"]["model"]):
        assert model == {"_target_": MODEL_TARGETS["loda"], "size": "tiny", "weights": None}
    assert upgraded["data"] == {"datasets": ["koniq"], "test_on": [], "roots": {"koniq": "/k"}}
    assert loda["model"]["vit"] == "tiny"  # the stored dict itself is left alone

    mllm = upgrade_stored_config(old_config({"_target_": MODEL_TARGETS["vp_mllm"], "hf_id": "/l"},
                                            {"_target_": "iqa.models.prompts.PaddingPrompt", "image_size": 336},
                                            {"datasets": [], "test_on": ["livec"], "root": "/c"}))
    assert mllm["model"] == {"_target_": MODEL_TARGETS["vp_mllm"], "hf_folder": "/l"}
    assert mllm["prompt"] == mllm["module"]["net"]["prompt"] == {"_target_": "iqa.models.prompts.PaddingPrompt"}
    assert mllm["data"]["roots"] == {"livec": "/c"}

    qmamba = upgrade_stored_config(old_config({"_target_": MODEL_TARGETS["qmamba"], "checkpoint": "/w"},
                                              {"_target_": "iqa.models.prompts.LinearProbe", "freeze_model": True},
                                              {"datasets": ["koniq"], "root": None}))
    for parent in (qmamba, qmamba["module"]["net"]):
        assert parent["prompt"] is None
        assert parent["model"] == {"_target_": MODEL_TARGETS["qmamba"], "weights": "/w", "tuning": "linear_probe"}
    assert qmamba["data"] == {"datasets": ["koniq"]}

    resnet = old_config({"_target_": "iqa.models.baselines.timm_regressor.ResNetIQA", "checkpoint": 1}, None, {})
    assert upgrade_stored_config(resnet) == resnet  # model.checkpoint is renamed only for the models that had it


def test_a_resumed_run_from_before_a_rename_continues_with_the_new_keys(tmp_path):
    from omegaconf import OmegaConf

    from iqa.run_folder import resumed_config

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")  # only its presence is checked here
    stored = old_config({"_target_": MODEL_TARGETS["loda"], "vit": "tiny"}, None,
                        {"datasets": ["koniq"], "test_on": [], "root": "/k", "roots": {}})
    (run / "resolved_config.yaml").write_text(OmegaConf.to_yaml({**stored, "paths": {"output_dir": str(run)}}))
    resumed = resumed_config(OmegaConf.create({"resume": str(run), "data": {"roots": {"koniq": "/moved"}}}),
                             ["resume=" + str(run), "data.roots.koniq=/moved"])
    assert OmegaConf.to_container(resumed.model) == {"_target_": MODEL_TARGETS["loda"], "size": "tiny"}
    assert OmegaConf.to_container(resumed.data.roots) == {"koniq": "/moved"} and "root" not in resumed.data


@pytest.mark.parametrize(("text", "question", "prefix"), [
    (RATE_PROMPT, "<|image|>Rate the technical quality of the image.", ""),
    ("USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the image is",
     "How would you rate the quality of this image?\n<|image|>\n", "The quality of the image is"),
])
def test_a_stored_prompt_text_becomes_question_and_answer_prefix(text, question, prefix):
    stored = old_config({"_target_": MODEL_TARGETS["vp_mplug"], "checkpoint": "/m", "prompt_text": text}, None, {})
    model = upgrade_stored_config(stored)["model"]
    assert model == {"_target_": MODEL_TARGETS["vp_mplug"], "hf_folder": "/m", "question": question,
                     "answer_prefix": prefix}
    stored["model"]["prompt_text"] = "<|image|> rate it"
    with pytest.raises(ConfigurationError, match=re.escape("is not of the form 'USER: <question> ASSISTANT:")):
        upgrade_stored_config(stored)


def test_a_checkpoint_saved_with_old_keys_loads_and_scores_the_same(compose_train, tiny_vlm_dir, data_dir, tmp_path):
    from iqa.checkpoint import load_module, read_checkpoint
    from iqa.experiment import train
    from iqa.scorer import load_scorer

    folder = str(tiny_vlm_dir / "mplug_owl2")
    cfg = compose_train("model=vp_mplug", f"model.hf_folder={folder}", "model.dtype=float32", "prompt=padding",
                        "prompt.size=4", "data.crop_size=28", "data.n_test_crops=1", "data.resize_shorter=28",
                        "data.test_crop_mode=center", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1")
    train(cfg)
    path = f"{cfg.paths.output_dir}/checkpoints/last.ckpt"
    checkpoint = read_checkpoint(path)
    config = checkpoint["iqa_config"]
    for parent in (config, config["module"]["net"]):  # as written before the rename
        model = parent["model"]
        model["checkpoint"] = model.pop("hf_folder")
        del model["question"], model["answer_prefix"]
        model["prompt_text"] = RATE_PROMPT
        parent["prompt"]["image_size"] = 28
    config["data"]["root"] = str(data_dir / "synthetic")
    del config["data"]["roots"]
    old_path = tmp_path / "old.ckpt"
    torch.save(checkpoint, old_path)

    module, upgraded = load_module(old_path)
    assert upgraded["model"]["hf_folder"] == folder and upgraded["model"]["question"].startswith("<|image|>Rate")
    assert upgraded["data"]["roots"] == {"synthetic": str(data_dir / "synthetic")}
    image = torch.rand(3, 28, 28)
    assert load_scorer(old_path, device="cpu")(image) == pytest.approx(load_scorer(path, device="cpu")(image))
    assert module.net.model.input_ids.tolist() == load_module(path)[0].net.model.input_ids.tolist()
