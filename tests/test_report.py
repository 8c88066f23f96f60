"""``python -m iqa.report`` on fake Hydra multirun folders."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from iqa.report import group_name, main
from tests.conftest import ROOT

KADID_SRCC = [0.80, 0.90, 0.70, 0.86]


def job(folder: Path, overrides: list[str], metrics: dict | None = None) -> None:
    """A Hydra job folder; finished when ``metrics`` is given."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "protocol": {"split_index": 0}}))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def multirun(tmp_path) -> Path:
    """KADID over 4 splits (seed varies with the split), KonIQ with one finished job of
    two, universal training with per-dataset keys over 2 seeds, one corrupt job."""
    root = tmp_path / "multirun" / "2025-01-01" / "12-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for i, srcc in enumerate(KADID_SRCC):
        job(root / str(i), ["model=resnet50", "data=kadid", f"protocol.split_index={i}", f"seed={i}"],
            {"test/srcc": srcc, "test/rmse": 0.5 + i, "test/n_images": 2000, "params/total": 5, "val/srcc": 0.99})
    job(root / "4", ["model=resnet50", "data=koniq", "protocol.split_index=0"], {"test/srcc": 0.91})
    job(root / "5", ["model=resnet50", "data=koniq", "protocol.split_index=1"])
    for i, seed in zip((10, 11), (1, 2)):
        job(root / str(i), ["data=mix_universal", f"+seed={seed}"], {"test/koniq/srcc": 0.8 + seed / 100,
                                                                      "test/mean/srcc": 0.7})
    job(root / "12", ["data=livec", "seed=1"])
    (root / "12" / "metrics.json").write_text('{"test/srcc": 0.')  # killed while writing
    return root


def test_groups_ignore_only_the_split_varying_overrides():
    assert group_name(["model=vit", "protocol.split_index=3", "seed=7"]) == "model=vit"
    assert group_name(["+seed=1", "~protocol.split_index"]) == "(defaults)"
    assert group_name(["model=vit", "seed_offset=1"]) == "model=vit seed_offset=1"


def test_report_table_files_and_unfinished_jobs(multirun, capsys):
    assert main([str(multirun)]) == 0
    out = capsys.readouterr().out
    median, mean, std = statistics.median(KADID_SRCC), statistics.mean(KADID_SRCC), statistics.stdev(KADID_SRCC)
    kadid = "model=resnet50 data=kadid"
    assert f"| {kadid} | test/srcc | {median:.4f} | {mean:.4f} ± {std:.4f} | 4 |" in out
    assert f"| {kadid} | test/n_images | 2000 | 2000 ± 0 | 4 |" in out
    assert "| model=resnet50 data=koniq | test/srcc | 0.9100 | 0.9100 ± – | 1 |" in out
    assert "| data=mix_universal | test/koniq/srcc | 0.8150 | 0.8150 ± 0.0071 | 2 |" in out
    assert "params/total" not in out and "val/srcc" not in out
    assert "Unfinished jobs (no readable metrics.json): 5, 12" in out
    assert (multirun / "report.md").read_text() == out

    table = pd.read_csv(multirun / "report.csv")
    assert list(table.columns) == ["group", "metric", "median", "mean", "std", "count"]
    assert list(table["group"].unique()) == [kadid, "model=resnet50 data=koniq", "data=mix_universal"]
    rows = table.set_index(["group", "metric"])
    assert rows.loc[(kadid, "test/rmse"), "median"] == pytest.approx(2.0)
    assert rows.loc[(kadid, "test/srcc"), "std"] == pytest.approx(std)


def test_out_folder(multirun, tmp_path):
    assert main([str(multirun), "--out", str(tmp_path / "tables")]) == 0
    assert (tmp_path / "tables" / "report.md").is_file() and (tmp_path / "tables" / "report.csv").is_file()
    assert not (multirun / "report.md").exists()


def test_a_folder_without_finished_jobs_is_a_clear_error(tmp_path, capsys):
    job(tmp_path / "0", ["seed=1"])
    assert main([str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert f"no finished job under {tmp_path}" in error and "1 unfinished" in error
    assert main([str(tmp_path / "missing")]) == 1
    assert f"{tmp_path / 'missing'} is not a folder" in capsys.readouterr().err


def test_runs_as_a_module(multirun):
    done = subprocess.run([sys.executable, "-m", "iqa.report", str(multirun)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| model=resnet50 data=kadid | test/srcc |" in done.stdout
