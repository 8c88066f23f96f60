"""A diverged run stops with a clear error, a non-zero exit code and a run folder that says so."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from iqa.experiment import train
from iqa.training.divergence import StopOnDivergence, TrainingDivergedError
from tests.conftest import ROOT, TINY_RUN, compose_config

FAST_RUN = [o for o in TINY_RUN if not o.startswith("model=")] + ["model=cnniqa"]


def strict_json_files(folder) -> dict[str, object]:
    """Every JSON file below ``folder``, parsed refusing ``NaN``/``Infinity``."""
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    return {str(path.relative_to(folder)): json.loads(path.read_text(), parse_constant=refuse)
            for path in folder.rglob("*.json")}


def test_train_py_with_a_huge_learning_rate_fails_loudly(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    command = [sys.executable, "train.py", *FAST_RUN, "optimizer.lr=1e8", f"paths.data_dir={data_dir}",
               f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert done.returncode != 0
    message = re.search(r"TrainingDivergedError: (training diverged: training loss is .*)", done.stderr)
    assert message, done.stderr[-3000:]
    step = re.search(r"at global step (\d+) \(epoch 0, learning rate ([0-9.e+-]+)\)", message.group(1))
    assert step and int(step.group(1)) < 3 and float(step.group(2)) > 1e6, message.group(1)
    assert "lower optimizer.lr" in message.group(1) and "trainer.gradient_clip_val" in message.group(1)

    files = strict_json_files(run_dir)
    info = files["run_info.json"]
    assert info["status"] == "failed" and info["end_time"]
    assert info["error"] == {"type": "TrainingDivergedError", "message": message.group(1)}
    assert "optimizer.lr=1e8" in info["command"]["hydra_overrides"]
    assert "metrics.json" not in files  # never tested: no metrics of diverged weights


def test_a_finished_run_says_so(tmp_path, data_dir):
    cfg = compose_config("train", FAST_RUN + ["trainer.limit_test_batches=2"], tmp_path / "run", data_dir)
    train(cfg)
    files = strict_json_files(tmp_path / "run")
    assert files["run_info.json"]["status"] == "finished" and "error" not in files["run_info.json"]
    assert files["run_info.json"]["seed"] == cfg.seed
    assert "test/srcc" in files["metrics.json"]


class InfiniteGradient(L.LightningModule):
    """A finite loss, sqrt(w - w) = 0, whose gradient is +inf (``nan=True``: NaN)."""

    def __init__(self, nan: bool = False) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.nan = nan

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = torch.sqrt(self.w - self.w.detach()).sum()
        return loss * 0 if self.nan else loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.zeros(8, 1), batch_size=1)


def fit(module: L.LightningModule, **trainer_kwargs) -> L.Trainer:
    trainer = L.Trainer(max_steps=4, callbacks=[StopOnDivergence()], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", **trainer_kwargs)
    trainer.fit(module)
    return trainer


def test_non_finite_gradients_stop_before_the_step_when_clipping_is_on():
    module = InfiniteGradient()
    expected = r"gradients are not finite at global step 0 \(epoch 0, learning rate 0.1\); lower optimizer.lr \(grad"
    with pytest.raises(TrainingDivergedError, match=expected):
        fit(module, gradient_clip_val=1.0)
    assert torch.equal(module.w.detach(), torch.ones(3))  # the weights never saw it


def test_without_clipping_the_loss_check_catches_the_next_step():
    with pytest.raises(TrainingDivergedError, match=r"training loss is nan at global step 1 \(epoch 0"):
        fit(InfiniteGradient())


def test_value_clipping_stops_on_nan_gradients_only():
    trainer = fit(InfiniteGradient(), gradient_clip_val=1.0, gradient_clip_algorithm="value")  # inf → 1: finite
    assert trainer.global_step == 4
    with pytest.raises(TrainingDivergedError, match="gradients are not finite at global step 0"):
        fit(InfiniteGradient(nan=True), gradient_clip_val=1.0, gradient_clip_algorithm="value")
