"""``curves.png``: training loss and validation SRCC/PLCC per epoch, best epoch marked."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from matplotlib.image import imread

from iqa.checkpoint import read_checkpoint
from iqa.experiment import train
from iqa.training.curves import TrainingCurves, best_epoch, curves_figure

HISTORY = [
    {"epoch": 0, "train/loss": 0.9, "val/srcc": 0.5, "val/plcc": 0.55},
    {"epoch": 1, "train/loss": 0.5, "val/srcc": 0.8, "val/plcc": 0.82},
    {"epoch": 2, "train/loss": 0.4, "val/srcc": 0.7, "val/plcc": math.nan},
]


def test_best_epoch_follows_the_monitored_metric_and_its_mode():
    assert best_epoch(HISTORY, "val/srcc", "max") == 1
    assert best_epoch(HISTORY, "train/loss", "min") == 2
    assert best_epoch([{"epoch": 0, "val/srcc": math.nan}], "val/srcc") is None  # nothing selectable yet


def test_without_validation_the_last_epoch_is_the_tested_one():
    history = [{"epoch": e, "train/loss": 1.0 / (e + 1)} for e in range(3)]
    assert best_epoch(history, None) == 2
    assert best_epoch([], None) is None


def test_figure_marks_the_best_epoch_in_both_panels():
    figure = curves_figure(HISTORY, best=1)
    loss_axes, val_axes = figure.axes
    assert [line.get_label() for line in val_axes.lines] == ["SRCC", "PLCC", "best epoch (1)"]
    assert list(loss_axes.lines[0].get_xdata()) == [0, 1, 2]
    assert loss_axes.lines[-1].get_xdata()[0] == 1 and val_axes.lines[-1].get_xdata()[0] == 1


def test_figure_without_validation_says_so():
    figure = curves_figure([{"epoch": 0, "train/loss": 1.0}], best=0)
    assert "no validation part" in [text.get_text() for text in figure.axes[1].texts]


def test_history_survives_a_checkpoint_round_trip(tmp_path):
    callback = TrainingCurves(str(tmp_path))
    callback.history = [dict(row) for row in HISTORY]
    restored = TrainingCurves(str(tmp_path))
    restored.load_state_dict(callback.state_dict())
    assert restored.history == callback.history


@pytest.mark.parametrize("protocol", ["protocol.val_fraction=0.2", "protocol.val_fraction=0"])
def test_every_run_folder_has_curves_and_checkpoints_carry_the_history(compose_train, protocol):
    cfg = compose_train("model=cnniqa", "trainer.max_epochs=2", "trainer.limit_test_batches=1", protocol)
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    image = imread(run_dir / "curves.png")
    assert image.shape[1] > image.shape[0] > 100
    state = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["callbacks"]
    (history,) = [value["history"] for key, value in state.items() if key.startswith("TrainingCurves")]
    assert [row["epoch"] for row in history] == [0, 1]
    assert all(row["train/loss"] > 0 for row in history)
    has_validation = protocol.endswith("0.2")
    assert all(("val/srcc" in row) == has_validation for row in history)
