"""Per-distortion-type metrics: the same numbers as the whole-set metric on each subset, and the
report a real run writes for a synthetic-distortion test set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from iqa.metrics import IQAMetrics
from iqa.metrics.per_type import per_type_bar_chart, per_type_metrics, write_per_type_csv


def test_each_type_gets_the_metrics_of_its_own_images(tmp_path):
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 100, 40)
    preds = mos + rng.normal(0, 10, 40)
    distortions = ["blur"] * 15 + ["noise"] * 20 + [None] * 5  # references carry no type
    rows = per_type_metrics(distortions, preds, mos)
    assert [(r["distortion"], r["n_images"]) for r in rows] == [("blur", 15), ("noise", 20)]
    whole = IQAMetrics()
    whole.update(torch.as_tensor(preds[15:35]), torch.as_tensor(mos[15:35]), torch.arange(20))
    expected = whole.compute()
    assert rows[1]["srcc"] == pytest.approx(float(expected["srcc"])) and rows[1]["plcc"] == pytest.approx(
        float(expected["plcc"]))
    table = list(csv.DictReader(open(write_per_type_csv(rows, tmp_path / "t.csv"))))
    assert table[0]["distortion"] == "blur" and float(table[1]["srcc"]) == pytest.approx(rows[1]["srcc"], abs=1e-4)
    assert per_type_bar_chart(rows, tmp_path / "t.png").stat().st_size > 1000


def test_a_run_on_synthetic_distortions_writes_the_per_type_report(compose_train):
    from iqa.experiment import train

    cfg = compose_train("trainer.max_epochs=1")
    train(cfg)
    rows = list(csv.DictReader(open(f"{cfg.paths.output_dir}/per_type_synthetic.csv")))
    metrics = json.load(open(f"{cfg.paths.output_dir}/metrics.json"))
    assert len(rows) == 5 and sum(int(r["n_images"]) for r in rows) < metrics["test/n_images"]  # minus references
    assert Path(cfg.paths.output_dir, "per_type_synthetic.png").stat().st_size > 1000
