"""``python -m iqa.report`` on fake Hydra multirun folders."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from iqa.report import MARKER, main, parse_overrides
from tests.conftest import ROOT

KADID_SRCC = [0.80, 0.90, 0.70, 0.86]


def job(folder: Path, overrides: list[str], metrics: dict | None = None) -> None:
    """A Hydra job folder; finished when ``metrics`` is given."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "protocol": {"split_index": 0}}))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


def run_info(folder: Path, status: str, commit: str | None = "0123456789abcdef", dirty: bool = False,
             error: dict | None = None, pid: int | None = None) -> None:
    """The ``run_info.json`` that :mod:`iqa.provenance` writes (the fields the report reads)."""
    info = {"status": status, "git": {"commit": commit, "dirty": dirty}, "hostname": socket.gethostname(),
            "pid": pid or os.getpid()}
    if error:
        info["error"] = error
    (folder / "run_info.json").write_text(json.dumps(info))


def dead_pid() -> int:
    """The id of a process that has ended."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.fixture
def multirun(tmp_path) -> Path:
    """Every job runs model=resnet50: KADID over 4 splits (seed varies with the split), KonIQ
    with one finished job of two (the other still running), universal training with
    per-dataset keys over 2 seeds, one job killed while writing its metrics."""
    root = tmp_path / "multirun" / "2025-01-01" / "12-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for i, srcc in enumerate(KADID_SRCC):
        job(root / str(i), ["model=resnet50", "data=kadid", f"protocol.split_index={i}", f"seed={i}"],
            {"test/srcc": srcc, "test/plcc": 0.9, "test/krcc": 0.7, "test/rmse": 0.5 + i, "test/n_images": 2000,
             "test/plcc_raw": 0.8, "params/total": 5, "val/srcc": 0.99})
    job(root / "4", ["model=resnet50", "data=koniq", "protocol.split_index=0"], {"test/srcc": 0.91})
    job(root / "5", ["model=resnet50", "data=koniq", "protocol.split_index=1"])
    run_info(root / "5", "running")  # this process: alive
    for i, seed in zip((10, 11), (1, 2)):
        job(root / str(i), ["model=resnet50", "data=mix_universal", f"+seed={seed}"],
            {"test/koniq/srcc": 0.8 + seed / 100, "test/koniq/n_images": 2015, "test/mean/srcc": 0.7})
    job(root / "12", ["model=resnet50", "data=livec", "seed=1"])
    (root / "12" / "metrics.json").write_text('{"test/srcc": 0.')  # killed while writing
    run_info(root / "12", "running", pid=dead_pid())
    return root


def test_overrides_are_parsed_with_hydra_prefixes():
    assert parse_overrides(["model=vit", "+seed=1", "++a.b=x=y", "~protocol.split_index"]) == {
        "model": "vit", "seed": "1", "a.b": "x=y", "protocol.split_index": "(removed)"}


def test_wide_table_one_row_per_configuration(multirun, capsys):
    assert main([str(multirun), "--allow-incomplete"]) == 0
    out = capsys.readouterr().out
    median, mean, std = statistics.median(KADID_SRCC), statistics.mean(KADID_SRCC), statistics.stdev(KADID_SRCC)
    assert "Every job: model=resnet50.\n" in out  # the fixed override is stated once, not in the key
    assert ("| data | n_images | SRCC | PLCC | KRCC | RMSE | koniq n_images | koniq SRCC | mean SRCC |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n") in out
    assert (f"| kadid | 2000 | {median:.4f} ({mean:.4f} ± {std:.4f}, 4) | 0.9000 (0.9000 ± 0.0000, 4) "
            "| 0.7000 (0.7000 ± 0.0000, 4) | 2.0000 (2.0000 ± 1.2910, 4) | – | – | – |\n") in out
    assert "| koniq | – | 0.9100 (0.9100 ± –, 1) | – | – | – | – | – | – |\n" in out
    assert ("| mix_universal | – | – | – | – | – | 2015 | 0.8150 (0.8150 ± 0.0071, 2) "
            "| 0.7000 (0.7000 ± 0.0000, 2) |") in out
    assert "params" not in out and "val/" not in out and "plcc_raw" not in out
    assert "model" not in out.split("\n\n")[1]  # the table
    assert "Jobs: 7 finished, 0 failed, 2 unfinished." in out
    assert ("Unfinished jobs (2, not in the table):\n"
            f"- 5: status running (pid {os.getpid()}); metrics.json missing\n"
            "- 12: status running, but its process") in out
    assert "is gone: killed; metrics.json unreadable" in out
    assert (multirun / "report.md").read_text() == f"<!-- {MARKER} -->\n{out}"

    table = pd.read_csv(multirun / "report.csv")
    assert list(table.columns[:7]) == ["configuration", "data", "test/n_images", "test/srcc/median",
                                       "test/srcc/mean", "test/srcc/std", "test/srcc/n"]
    assert table["configuration"].tolist() == ["data=kadid", "data=koniq", "data=mix_universal"]
    rows = table.set_index("data")
    assert rows.loc["kadid", "test/rmse/median"] == pytest.approx(2.0)
    assert rows.loc["kadid", "test/srcc/std"] == pytest.approx(std, abs=1e-6)
    assert rows.loc["kadid", "test/plcc_raw/median"] == pytest.approx(0.8)  # every test metric in the CSV
    assert rows.loc["mix_universal", "test/koniq/n_images"] == 2015 and rows.loc["koniq", "test/srcc/n"] == 1


def test_unfinished_jobs_fail_the_exit_code_unless_allowed(multirun, capsys):
    assert main([str(multirun)]) == 1
    captured = capsys.readouterr()
    assert "| kadid |" in captured.out and (multirun / "report.tex").is_file()
    assert "2 job(s) unfinished (running or killed)" in captured.err and "--allow-incomplete" in captured.err


def test_latex_table_is_booktabs_with_test_set_groups(multirun):
    main([str(multirun), "--allow-incomplete"])
    tex = (multirun / "report.tex").read_text()
    assert tex.startswith(f"% {MARKER}\n\\begin{{table}}[t]\n") and tex.endswith("\\end{tabular}\n\\end{table}\n")
    assert "\\begin{tabular}{lrrrrrrrr}\n\\toprule\n" in tex
    assert " &  &  &  &  &  & \\multicolumn{2}{c}{koniq} & \\multicolumn{1}{c}{mean} \\\\\n" in tex
    assert "\\cmidrule(lr){7-8} \\cmidrule(lr){9-9}\n" in tex
    assert "data & n\\_images & SRCC & PLCC & KRCC & RMSE & n\\_images & SRCC & SRCC \\\\\n\\midrule\n" in tex
    assert "mix\\_universal & -- & -- &" in tex and "0.8150 (0.8150 $\\pm$ 0.0071, 2)" in tex
    assert "\\bottomrule" in tex and "model=resnet50" in tex  # the fixed override in the caption


def test_configuration_column_when_only_the_split_varies(tmp_path, capsys):
    for i in range(2):
        job(tmp_path / str(i), ["model=vit", "data=kadid", f"protocol.split_index={i}"], {"test/srcc": 0.8})
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| configuration | SRCC |\n|---|---:|\n| model=vit data=kadid | 0.8000 (0.8000 ± 0.0000, 2) |" in out
    assert "Every job" not in out


def test_reruns_replace_own_reports_but_never_foreign_files(multirun, tmp_path, capsys):
    assert main([str(multirun), "--allow-incomplete"]) == 0
    job(multirun / "13", ["model=resnet50", "data=koniq", "protocol.split_index=2"], {"test/srcc": 0.93})
    assert main([str(multirun), "--allow-incomplete"]) == 0  # its own files are replaced
    assert "0.9200 (0.9200 ± 0.0141, 2)" in (multirun / "report.md").read_text()
    assert not [p for p in multirun.iterdir() if p.name.startswith(".")]  # no temporary file left

    (multirun / "report.tex").write_text("\\section{my notes}\n")
    before = {p.name: p.read_bytes() for p in multirun.glob("report.*")}
    capsys.readouterr()
    assert main([str(multirun), "--allow-incomplete"]) == 1
    error = capsys.readouterr().err
    assert f"{multirun / 'report.tex'} exists and was not written by python -m iqa.report" in error
    assert {p.name: p.read_bytes() for p in multirun.glob("report.*")} == before  # nothing written
    assert main([str(multirun), "--allow-incomplete", "--out", str(tmp_path / "tables")]) == 0
    assert {p.name for p in (tmp_path / "tables").iterdir()} == {"report.md", "report.csv", "report.tex"}


def test_a_folder_without_finished_jobs_is_a_clear_error(tmp_path, capsys):
    job(tmp_path / "0", ["seed=1"])
    assert main([str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert f"no finished job under {tmp_path}" in error and "1 unfinished" in error
    assert "unfinished 0: no run_info.json; metrics.json missing" in error
    assert main([str(tmp_path / "missing")]) == 1
    assert f"{tmp_path / 'missing'} is not a folder" in capsys.readouterr().err


def test_runs_as_a_module(multirun):
    done = subprocess.run([sys.executable, "-m", "iqa.report", str(multirun), "--allow-incomplete"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| kadid | 2000 |" in done.stdout


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

    assert main([str(tmp_path), "--allow-incomplete"]) == 1
    captured = capsys.readouterr()
    assert "| data=kadid | 0.8500 (0.8500 ± 0.0707, 2) |" in captured.out  # jobs 0 and 1 only
    assert "PLCC" not in captured.out
    assert "FAILED jobs (4, not in the table):" in captured.out
    assert "- 2: TrainingDivergedError: training diverged: training loss is nan at global step 7" in captured.out
    assert "- 3: non-finite test metrics: test/srcc" in captured.out
    assert "- 4: non-finite test metrics: test/srcc" in captured.out
    assert "- 5: RuntimeError: crashed after testing" in captured.out
    assert "4 job(s) failed" in captured.err
    assert (tmp_path / "report.md").read_text() == f"<!-- {MARKER} -->\n{captured.out}"


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
    assert "| configuration | SRCC |\n" in out
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
    assert "| data | SRCC | commit |" in out
    assert f"| kadid | 0.8500 (0.8500 ± 0.0707, 2) | {'a' * 10} {'b' * 10} |" in out
    assert "| koniq | 0.7000 (0.7000 ± –, 1) | unknown |" in out
    assert "Code: the jobs ran 3 versions (commit column)" in out
