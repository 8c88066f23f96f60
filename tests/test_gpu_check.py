"""benchmarks/gpu_check.py: the CPU smoke run (same code, tiny sizes) writes one table and its
JSON; a failing case lands in its row and the run goes on; the time budget holds; without CUDA
the script exits 2 with a message."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_cpu_run_writes_one_table_and_json(tmp_path):
    assert gpu_check.main([str(tmp_path), "--tiny"]) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    table = (tmp_path / "gpu_check.md").read_text()
    assert {r["section"] for r in result["rows"]} == {"selective scan", "training step", "LoDa", "VP prompt step",
                                                      "10-crop eval", "data loader"}
    assert set(result["seconds"]) == set(gpu_check.SECTIONS)
    for r in result["rows"]:
        assert f"| {r['section']} | {r['case']} |" in table
        assert r["note"] == "needs CUDA" or (r["ms"] or r["images_s"]) > 0, r
    assert sum(r["note"] == "needs CUDA" for r in result["rows"]) == 2  # Triton and mamba_ssm


def test_errors_go_into_their_rows_and_the_budget_stops_the_run(tmp_path, monkeypatch):
    def out_of_memory(sizes):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")

    def slow(sizes):
        time.sleep(5)
        return [gpu_check.row("slow", "never")]

    sections = {"oom": out_of_memory, "fine": lambda sizes: [gpu_check.row("fine", "a", ms=1.0)], "slow": slow,
                "after": lambda sizes: [gpu_check.row("after", "never")]}
    monkeypatch.setattr(gpu_check, "SECTIONS", sections)
    rows = gpu_check.run(tmp_path, gpu_check.TINY, budget=1)
    notes = {r["section"]: r["note"] for r in rows}
    assert notes == {"oom": "error: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
                     "fine": "", "slow": "error: TimeoutError: time budget of 1 s used up",
                     "after": "skipped: time budget used up"}
    assert "| oom | all |  |  |  | error: RuntimeError: CUDA out of memory" in (tmp_path / "gpu_check.md").read_text()


def test_without_cuda_the_script_exits_2_with_a_message(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    child = subprocess.run(["bash", "benchmarks/gpu_check.sh", str(tmp_path / "out")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 2
    assert "no CUDA device" in child.stderr and "--tiny" in child.stderr
    assert not (tmp_path / "out").exists()
