"""Resume after ``kill -9`` gives the uninterrupted run's result, exactly; run folders are never reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, TINY_RUN

RUN = [o for o in TINY_RUN if not o.startswith(("trainer.max_epochs", "trainer.limit_train_batches",
                                                 "data.num_workers"))]
RUN += ["trainer.max_epochs=3", "trainer.limit_train_batches=6", "data.num_workers=2", "model.head_dropout=0.2"]


def train_command(data_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "train.py", *RUN, f"paths.data_dir={data_dir}", *overrides]


def run_to_end(data_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    done = subprocess.run(train_command(data_dir, *overrides), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def last_epoch(checkpoint: Path) -> int | None:
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]
    except Exception:  # noqa: BLE001 - not written yet
        return None


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_result(tmp_path, data_dir):
    uninterrupted = tmp_path / "uninterrupted"
    run_to_end(data_dir, f"hydra.run.dir={uninterrupted}")
    expected = json.loads((uninterrupted / "metrics.json").read_text())

    killed = tmp_path / "killed"
    process = subprocess.Popen(train_command(data_dir, f"hydra.run.dir={killed}"), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while last_epoch(killed / "checkpoints" / "last.ckpt") is None and process.poll() is None:
        assert time.monotonic() < deadline, "no last.ckpt after the first epoch"
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # the run and its data workers, as a scheduler would
    process.wait()
    assert not (killed / "metrics.json").exists()
    assert last_epoch(killed / "checkpoints" / "last.ckpt") < 2

    run_to_end(data_dir, f"resume={killed}", "data.num_workers=1")  # worker count does not matter
    def results(metrics: dict) -> dict:  # everything but the wall-clock times
        return {key: value for key, value in metrics.items() if not key.startswith("time/")}

    assert results(json.loads((killed / "metrics.json").read_text())) == results(expected)
    assert (killed / ".hydra" / "overrides.yaml").is_file()  # the original record is kept
    assert list((killed / ".hydra").glob("resume_*/overrides.yaml"))


@pytest.mark.slow
def test_resume_refuses_overrides_that_change_the_experiment(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    run_to_end(data_dir, f"hydra.run.dir={run_dir}", "trainer.max_epochs=1")
    (run_dir / "metrics.json").unlink()  # as if it had been stopped before its test
    refused = subprocess.run(train_command(data_dir, f"resume={run_dir}", "trainer.max_epochs=1", "optimizer.lr=0.5"),
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "the override optimizer.lr would change the experiment (0.002 in the run, 0.5 now)" in refused.stderr


@pytest.mark.slow
def test_a_second_run_into_a_used_folder_is_refused_and_nothing_is_overwritten(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    run_to_end(data_dir, f"hydra.run.dir={run_dir}", "trainer.max_epochs=1")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    second = subprocess.run(train_command(data_dir, f"hydra.run.dir={run_dir}", "trainer.max_epochs=2"), cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # another command: .hydra/ would differ
    assert second.returncode != 0
    assert f"run folder {run_dir} already holds another run's results" in second.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("problem", ["no run", "no checkpoint"])
def test_resume_of_a_folder_that_is_not_a_run_names_what_is_missing(tmp_path, problem):
    from iqa.run_folder import RunFolderError, check_resumable

    (tmp_path / "resolved_config.yaml").write_text("seed: 1\n") if problem == "no checkpoint" else None
    with pytest.raises(RunFolderError, match="last.ckpt"):
        check_resumable(tmp_path)


@pytest.mark.slow
def test_without_a_run_dir_each_run_gets_a_new_timestamped_folder(tmp_path, data_dir):
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *RUN, "trainer.max_epochs=1",
                           f"paths.data_dir={data_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "outputs" / "train").iterdir() if p.name != "latest"]
    assert (run_dir / "metrics.json").is_file() and (run_dir / ".hydra" / "overrides.yaml").is_file()


def test_a_finished_run_is_not_resumed(tmp_path):
    from iqa.run_folder import RunFolderError, check_resumable

    (tmp_path / "checkpoints").mkdir()
    for name in ("resolved_config.yaml", "checkpoints/last.ckpt", "metrics.json"):
        (tmp_path / name).write_text("")
    with pytest.raises(RunFolderError, match="has finished"):
        check_resumable(tmp_path)
