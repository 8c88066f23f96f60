"""The entry points as a user meets them: one-screen errors with exit code 2, sweeps that go on
past a failed job, a quiet console, ``latest`` links, ``--help``, zero-shot scoring, and the
warnings that stop a prompt from tuning noise."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.nn as nn
from hydra.errors import InstantiationException

from iqa import create_model
from iqa.cli import format_user_error
from iqa.errors import ConfigurationError, UserError, user_error_in
from iqa.experiment import evaluate
from iqa.models.pipeline import ScoringPipeline
from iqa.models.prompts import PaddingPrompt
from tests.conftest import ROOT, TINY_RUN, compose_config

FAST = [o for o in TINY_RUN if not o.startswith("callbacks.progress_bar")] + ["trainer.limit_test_batches=1"]


def run(script: str, *overrides: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(ROOT / script), *overrides], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


def test_a_missing_dataset_is_one_screen_and_exit_code_2(tmp_path, data_dir):
    done = run("train.py", "data=koniq", f"paths.data_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 3, done.stderr
    assert "DatasetError: koniq: dataset folder" in done.stderr and "docs/weights_and_data.md#koniq" in done.stderr
    with_traceback = run("train.py", "data=koniq", "debug=true", f"paths.data_dir={tmp_path}",
                         f"hydra.run.dir={tmp_path / 'debug'}")
    assert with_traceback.returncode == 1 and "Traceback" in with_traceback.stderr


def test_a_configuration_error_raised_inside_instantiate_is_found_and_named():
    try:
        try:
            raise ConfigurationError("prompt.size=30 must be in (0, 16) for data.crop_size=32")
        except ConfigurationError as error:
            raise InstantiationException("Error in call to target 'PaddingPrompt'") from error
    except InstantiationException as wrapped:
        found = user_error_in(wrapped)
    assert isinstance(found, UserError) and found.exit_code == 2
    assert format_user_error(found).splitlines() == [
        "ConfigurationError: prompt.size=30 must be in (0, 16) for data.crop_size=32",
        "See README.md#methods-and-options.",
        "Run with debug=true (or HYDRA_FULL_ERROR=1) for the traceback.",
    ]
    assert user_error_in(RuntimeError("a bug")) is None


def test_a_sweep_goes_past_a_failed_job_names_it_and_exits_1(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    done = run("train.py", "-m", *FAST, "data=synthetic,koniq", f"paths.data_dir={data_dir}",
               f"hydra.sweep.dir={sweep}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert (sweep / "0" / "metrics.json").is_file()  # the job before the failure finished
    assert f"1 of 2 jobs in {sweep} did not finish" in done.stderr
    assert f"{sweep / '1'}: DatasetError: koniq: dataset folder" in done.stderr


def test_the_console_is_quiet_and_names_the_run_folder(tmp_path, data_dir):
    cwd = tmp_path / "clone"
    cwd.mkdir()
    done = run("train.py", *FAST, f"paths.data_dir={data_dir}", cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stdout + done.stderr
    for noise in ("💡 Tip", "LeafSpec", "v_num", "FLOPs", "train/mse", "Test metric", "logistic fit"):
        assert noise not in console, noise
    runs = cwd / "outputs" / "train"
    (folder,) = [p for p in runs.iterdir() if p.name != "latest"]
    assert console.count(f"Run folder: {folder}") == 2
    assert (runs / "latest").is_symlink() and (runs / "latest").resolve() == folder.resolve()
    assert "SRCC" in done.stdout and "PLCC" in done.stdout


def test_help_lists_real_options_and_examples():
    text = run("train.py", "--help").stdout
    assert "_loader" not in text and "data: agiqa" in text
    assert text.count("python ") >= 3 and "docs/weights_and_data.md" in text


def test_eval_without_a_checkpoint_or_a_zero_shot_model_says_what_to_pass(tmp_path, data_dir):
    done = run("eval.py", f"hydra.run.dir={tmp_path / 'eval'}")
    assert done.returncode == 2 and "eval.py needs ckpt_path=" in done.stderr and "Traceback" not in done.stderr
    refused = run("eval.py", "model=cnniqa", "images=data", f"hydra.run.dir={tmp_path / 'cnn'}")
    assert refused.returncode == 2 and "has a new regression head and scores nothing" in refused.stderr


def test_a_frozen_mllm_scores_images_zero_shot(tmp_path, data_dir, tiny_vlm_dir):
    images = sorted((data_dir / "synthetic" / "images").glob("*_a.png"))[:3]
    cfg = compose_config("eval", ["model=vp_mplug", f"model.hf_folder={tiny_vlm_dir / 'mplug_owl2'}",
                                  "model.dtype=float32", "prompt=none", f"images='{images[0].parent}/*_a.png'"],
                         tmp_path / "eval", data_dir)
    with open(evaluate(cfg), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list(images[0].parent.glob("*_a.png")))
    assert all(row["status"] == "ok" and 0 <= float(row["score"]) <= 1 for row in rows)


def test_a_prompt_on_a_random_frozen_model_warns_and_on_a_zero_head_is_refused(caplog):
    with caplog.at_level(logging.WARNING):
        ScoringPipeline(create_model("cnniqa"), PaddingPrompt(size=4), input_size=32)
    assert "frozen parameters are randomly initialised" in caplog.text and "model.pretrained" in caplog.text
    with pytest.raises(ConfigurationError, match="prompt.tune_head=true"):
        ScoringPipeline(create_model("resnet18"), PaddingPrompt(size=4), input_size=32)
    tuned = ScoringPipeline(create_model("resnet18"), PaddingPrompt(size=4, tune_head=True), input_size=32)
    trainable = {name.split(".")[0] for name, p in tuned.named_parameters() if p.requires_grad}
    assert trainable == {"model", "prompt"} and isinstance(tuned.model.head[-1], nn.Linear)
    assert all(p.requires_grad for p in tuned.model.head.parameters())
