"""Two "nodes" of one CPU process each, launched as a cluster scheduler would (NODE_RANK,
MASTER_ADDR/PORT on 127.0.0.1): one run folder, checkpoints written once, test metrics equal
to a single-process evaluation; a killed node makes the other fail instead of hanging."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iqa.experiment import evaluate
from tests.conftest import ROOT, TINY_RUN


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_nodes(run_dir: Path, data_dir: Path, *overrides: str) -> list[subprocess.Popen]:
    port = free_port()
    command = [sys.executable, "train.py", *TINY_RUN, "trainer.strategy=ddp", "trainer.num_nodes=2",
               "trainer.devices=1", f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *overrides]
    nodes = []
    for node_rank in (0, 1):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(node_rank)}
        log = open(run_dir.parent / f"node{node_rank}.log", "w")
        nodes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    return nodes


@pytest.mark.slow
def test_two_nodes_train_and_test_one_run(tmp_path, data_dir, compose_train):
    run_dir = tmp_path / "run"
    nodes = start_nodes(run_dir, data_dir, "trainer.max_epochs=2")
    codes = [node.wait(timeout=600) for node in nodes]
    logs = [(tmp_path / f"node{rank}.log").read_text() for rank in (0, 1)]
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt"]  # written once, by global rank 0
    written = json.loads((run_dir / "metrics.json").read_text())

    cfg = compose_train(f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", name="eval")
    single = evaluate(cfg)
    assert written["test/n_images"] == single["test/n_images"]
    for key in ("test/srcc", "test/plcc", "test/krcc", "test/rmse"):
        assert written[key] == pytest.approx(single[key], abs=1e-6)


@pytest.mark.slow
def test_a_killed_node_makes_the_other_exit_with_an_error(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    nodes = start_nodes(run_dir, data_dir, "trainer.max_epochs=50", "trainer.collective_timeout_s=60")
    log0 = tmp_path / "node0.log"
    deadline = time.monotonic() + 300
    while "Epoch 1" not in (log0.read_text() if log0.exists() else "") and not (run_dir / "checkpoints").is_dir():
        assert nodes[0].poll() is None and time.monotonic() < deadline, log0.read_text()[-2000:]
        time.sleep(0.2)
    os.killpg(nodes[1].pid, signal.SIGKILL)
    started = time.monotonic()
    code = nodes[0].wait(timeout=180)  # bounded: the collective timeout is 60 s
    assert code != 0
    assert time.monotonic() - started < 150
