"""Two CPU processes on gloo: the same numbers as one process, one folder per sweep job."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from iqa.experiment import evaluate, train
from tests.conftest import ROOT, TINY_RUN


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data_dir):
    from tests.conftest import compose_config

    run_dir = tmp_path_factory.mktemp("ddp_ckpt")
    train(compose_config("train", TINY_RUN, run_dir, data_dir))
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(checkpoint, compose_train, tmp_path):
    single = compose_train(f"ckpt_path={checkpoint}", "trainer.devices=1", name="eval")
    single.paths.output_dir = str(tmp_path / "single")
    double = compose_train(f"ckpt_path={checkpoint}", "trainer.devices=2", "trainer.strategy=ddp_spawn", name="eval")
    double.paths.output_dir = str(tmp_path / "double")
    one, two = evaluate(single), evaluate(double)
    written = json.loads((tmp_path / "double" / "metrics.json").read_text())
    assert one["test/n_images"] == two["test/n_images"] == written["test/n_images"]
    for key in ("test/srcc", "test/plcc", "test/krcc", "test/rmse"):
        assert two[key] == pytest.approx(one[key], abs=1e-6) and written[key] == pytest.approx(one[key], abs=1e-6)


@pytest.mark.slow
def test_multirun_with_ddp_writes_one_folder_per_job(tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable, "train.py", "-m", *TINY_RUN, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.precision=32-true", "seed=1,2", f"paths.data_dir={data_dir}", f"hydra.sweep.dir={sweep_dir}",
        f"hydra.run.dir={tmp_path / 'stray_run_dir'}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert jobs == ["0", "1"], jobs
    assert all((sweep_dir / job / "metrics.json").is_file() for job in jobs)
    assert not (tmp_path / "stray_run_dir").exists()
