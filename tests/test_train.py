"""End-to-end runs through the real entry-point code: compose → instantiate → Trainer."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from iqa.checkpoint import load_module, read_checkpoint
from iqa.experiment import evaluate, train
from iqa.scorer import load_scorer


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One small real training run (2 epochs) shared by the checks below."""
    from tests.conftest import TINY_RUN, compose_config

    run_dir = tmp_path_factory.mktemp("trained")
    cfg = compose_config("train", TINY_RUN + ["trainer.max_epochs=2"], run_dir, data_dir)
    return run_dir, train(cfg)


def test_training_writes_metrics_plot_config_and_checkpoints(trained):
    run_dir, results = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test/srcc", "test/plcc", "test/krcc", "test/rmse", "test/n_images"} <= set(metrics)
    assert metrics["test/srcc"] == pytest.approx(results["test/srcc"])
    assert metrics["params/trainable"] == metrics["params/total"] > 0
    assert (run_dir / "scatter_synthetic.png").stat().st_size > 1000
    assert (run_dir / "resolved_config.yaml").is_file()
    assert {"best.ckpt", "last.ckpt"} <= {p.name for p in (run_dir / "checkpoints").iterdir()}


def test_eval_of_saved_checkpoint_reproduces_test_metrics(trained, compose_train):
    run_dir, results = trained
    cfg = compose_train(f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", name="eval")
    assert evaluate(cfg) == pytest.approx(results)


def test_scoring_own_images_from_cli_and_python(trained, compose_train, data_dir):
    run_dir, _ = trained
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    images = sorted((data_dir / "synthetic").rglob("*.png"))[:3]
    cfg = compose_train(f"ckpt_path={ckpt}", f"images={images[0].parent}", name="eval")
    csv_path = evaluate(cfg)
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "path,score,status" and len(rows) > 3
    scorer = load_scorer(ckpt, device="cpu")
    from_path = scorer(images[0])
    assert isinstance(from_path, float)
    from iqa.data.image_io import read_rgb

    tensor = torch.tensor(read_rgb(images[0])).permute(2, 0, 1)
    assert scorer(tensor) == pytest.approx(from_path, abs=1e-6)


def test_checkpoint_holds_trainable_tensors_only(compose_train):
    cfg = compose_train("prompt=padding", "prompt.size=4", "prompt.tune_head=true", "model=vit", "model.size=tiny",
                        "model.img_size=32")
    train(cfg)
    checkpoint = read_checkpoint(f"{cfg.paths.output_dir}/checkpoints/last.ckpt")
    prompt = {f"net.prompt.{strip}" for strip in ("top", "bottom", "left", "right")}
    assert set(checkpoint["state_dict"]) == prompt | {"net.model.head.1.weight", "net.model.head.1.bias"}
    module, _ = load_module(f"{cfg.paths.output_dir}/checkpoints/last.ckpt")
    assert not any(p.requires_grad for p in module.net.model.backbone.parameters())


class StopAfterFirstEpoch(L.Callback):
    """Interrupts a run at the end of its first epoch, as a crash or time limit would."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def test_resume_restores_the_uninterrupted_run(compose_train, tmp_path):
    def run(name: str, *overrides: str) -> dict:
        cfg = compose_train("protocol.val_fraction=0", "trainer.max_epochs=2", *overrides)  # test the last weights
        cfg.paths.output_dir = str(tmp_path / name)
        cfg.callbacks.checkpoint.dirpath = str(tmp_path / name / "checkpoints")
        return train(cfg)

    straight = run("straight")
    run("interrupted", "+callbacks.stop._target_=tests.test_train.StopAfterFirstEpoch")
    assert read_checkpoint(tmp_path / "interrupted" / "checkpoints" / "last.ckpt")["epoch"] == 0
    resumed = run("resumed", f"ckpt_path={tmp_path / 'interrupted' / 'checkpoints' / 'last.ckpt'}")
    assert resumed == pytest.approx(straight, abs=1e-6)


def test_checkpoint_from_another_model_is_refused(trained, compose_train):
    from iqa.models.weights import WeightsMismatchError

    run_dir, _ = trained
    cfg = compose_train("model=resnet50", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    with pytest.raises(WeightsMismatchError, match="another model"):
        train(cfg)


def test_cross_dataset_evaluation_scores_every_image(trained, compose_train):
    run_dir, _ = trained
    cfg = compose_train(f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", "data=synthetic", "data.crop_size=32",
                        "data.n_test_crops=1", "data.num_workers=0", name="eval")
    assert evaluate(cfg)["test/n_images"] == 630


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_training_logs_through_each_logger(logger, compose_train, tmp_path, monkeypatch):
    """A real run with TensorBoard, and with W&B (offline: no key, no network), writes its logs."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = compose_train(f"logger={logger}", "trainer.max_epochs=1", "trainer.limit_test_batches=1")
    train(cfg)
    run_dir = tmp_path / "run"
    if logger == "tensorboard":
        logged = list((run_dir / "lightning_logs").rglob("events.out.tfevents.*"))
    else:
        logged = list(run_dir.rglob("run-*.wandb"))
    assert logged and all(path.stat().st_size > 0 for path in logged)
