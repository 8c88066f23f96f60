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


def run_info(folder: Path, status: str, commit: str | None = "0123456789abcdef", dirty: bool = False,
             error: dict | None = None) -> None:
    """The ``run_info.json`` that :mod:`iqa.provenance` writes (the fields the report reads)."""
    info = {"status": status, "git": {"commit": commit, "dirty": dirty}}
    if error:
        info["error"] = error
    (folder / "run_info.json").write_text(json.dumps(info))


def test_failed_jobs_are_listed_never_averaged_and_the_exit_code_says_so(tmp_path, capsys):
    for i, srcc in enumerate((0.8, 0.9)):
        job(tmp_path / str(i), ["data=kadid", f"seed={i}"], {"test/srcc": srcc})
        run_info(tmp_path / str(i), "finished")
    job(tmp_path / "2", ["data=kadid", "seed=2"])  # diverged: no metrics.json
    run_info(tmp_path / "2", "failed", error={"type": "TrainingDivergedError",
                                              "message": "training diverged: training loss is nan\nat global step 7"})
    job(tmp_path / "3", ["data=kadid", "seed=3"], {"test/srcc": None, "test/plcc": 0.5})  # collapsed predictions
    job(tmp_path / "4", ["data=kadid", "seed=4"])
    (tmp_path / "4" / "metrics.json").write_text('{"test/srcc": NaN}')  # written before strict JSON
    job(tmp_path / "5", ["data=kadid", "seed=5"], {"test/srcc": 0.1})
    run_info(tmp_path / "5", "failed", error={"type": "RuntimeError", "message": "crashed after testing"})

    assert main([str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "| data=kadid | test/srcc | 0.8500 | 0.8500 ± 0.0707 | 2 |" in captured.out  # jobs 0 and 1 only
    assert "test/plcc" not in captured.out
    assert "FAILED jobs (4, not in the table):" in captured.out
    assert "- 2: TrainingDivergedError: training diverged: training loss is nan at global step 7" in captured.out
    assert "- 3: non-finite test metrics: test/srcc" in captured.out
    assert "- 4: non-finite test metrics: test/srcc" in captured.out
    assert "- 5: RuntimeError: crashed after testing" in captured.out
    assert "4 job(s) failed" in captured.err
    assert (tmp_path / "report.md").read_text() == captured.out
    assert (tmp_path / "report.csv").is_file()


def test_only_failed_jobs_is_an_error_naming_them(tmp_path, capsys):
    job(tmp_path / "0", ["seed=1"])
    run_info(tmp_path / "0", "failed", error={"type": "TrainingDivergedError", "message": "loss is inf"})
    assert main([str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "0 unfinished, 1 failed" in error and "FAILED 0: TrainingDivergedError: loss is inf" in error
    assert not (tmp_path / "report.md").exists()


def test_git_commit_under_the_table_when_jobs_agree(tmp_path, capsys):
    for i in range(2):
        job(tmp_path / str(i), ["data=kadid", f"seed={i}"], {"test/srcc": 0.8})
        run_info(tmp_path / str(i), "finished", dirty=True)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| group | metric | median | mean ± std | splits |\n" in out
    assert "Code: git commit 0123456789-dirty (every job)" in out and "uncommitted changes" in out
    assert pd.read_csv(tmp_path / "report.csv")["commit"].tolist() == ["0123456789-dirty"]


def test_git_commit_column_when_jobs_differ(tmp_path, capsys):
    job(tmp_path / "0", ["data=kadid", "seed=0"], {"test/srcc": 0.8})
    run_info(tmp_path / "0", "finished", commit="a" * 40)
    job(tmp_path / "1", ["data=kadid", "seed=1"], {"test/srcc": 0.9})
    run_info(tmp_path / "1", "finished", commit="b" * 40)
    job(tmp_path / "2", ["data=koniq"], {"test/srcc": 0.7})  # an old job without run_info.json
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| group | metric | median | mean ± std | splits | commit |" in out
    assert f"| data=kadid | test/srcc | 0.8500 | 0.8500 ± 0.0707 | 2 | {'a' * 10} {'b' * 10} |" in out
    assert "| data=koniq | test/srcc | 0.7000 | 0.7000 ± – | 1 | unknown |" in out
    assert "Code: the jobs ran 3 versions (commit column)" in out
