"""Strict JSON files (iqa/jsonio.py) and the run record ``run_info.json`` (iqa/provenance.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from iqa.jsonio import dumps, finite_or_none, write_json
from iqa.provenance import PACKAGES, RUN_INFO, git_state, read_run_info, update_status, write_run_info
from tests.conftest import ROOT


def strict_loads(text: str):
    """``json.loads`` that refuses ``NaN``/``Infinity``, as strict parsers (JavaScript, jq) do."""
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null():
    obj = {"a": math.nan, "b": [math.inf, 1.5, (-math.inf, 2)], "c": np.float32("nan"), "d": np.float64(0.25),
           "e": {"f": "NaN", "g": None, "h": 3}}
    assert finite_or_none(obj) == {"a": None, "b": [None, 1.5, [None, 2]], "c": None, "d": 0.25,
                                   "e": {"f": "NaN", "g": None, "h": 3}}
    assert strict_loads(dumps(obj))["b"] == [None, 1.5, [None, 2]]
    with pytest.raises(ValueError):
        strict_loads(json.dumps({"a": math.nan}))  # what json.dump wrote before
    with pytest.raises(TypeError):
        dumps({"a": object()})  # not JSON at all: refused, not guessed


def test_write_json_is_strict_and_atomic(tmp_path):
    path = write_json(tmp_path / "sub" / "metrics.json", {"test/srcc": math.nan, "test/plcc": 0.5}, sort_keys=True)
    assert strict_loads(path.read_text()) == {"test/plcc": 0.5, "test/srcc": None}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary file left
    with pytest.raises(TypeError):
        write_json(path, {"test/srcc": object()})
    assert strict_loads(path.read_text())["test/plcc"] == 0.5  # a failed write keeps the old file
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_run_info_fields_and_status(tmp_path):
    cfg = OmegaConf.create({"seed": 7})
    path = write_run_info(tmp_path, cfg)
    info = strict_loads(path.read_text())
    assert path == tmp_path / RUN_INFO and info["status"] == "running" and info["end_time"] is None
    assert set(info) >= {"start_time", "git", "python", "packages", "command", "seed", "hostname", "pid"}
    assert info["seed"] == 7 and info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(info["packages"]) == set(PACKAGES) and info["packages"]["torch"]
    assert info["command"]["argv"] == sys.argv and "hydra_overrides" in info["command"]
    assert set(info["git"]) == {"commit", "dirty"}

    update_status(tmp_path, "failed", ValueError("loss is nan"))
    failed = read_run_info(tmp_path)
    assert failed["status"] == "failed" and failed["end_time"] and failed["start_time"] == info["start_time"]
    assert failed["error"] == {"type": "ValueError", "message": "loss is nan"}
    update_status(tmp_path, "finished")
    assert "error" not in read_run_info(tmp_path) and read_run_info(tmp_path)["status"] == "finished"
    assert [p.name for p in tmp_path.iterdir()] == [RUN_INFO]


def test_git_state_of_this_tree_and_without_a_repository(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:
        state = git_state()
        assert state["commit"] == head.stdout.strip() and isinstance(state["dirty"], bool)
    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # not a repository
    assert git_state(tmp_path / "missing") == {"commit": None, "dirty": None}


def test_git_state_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no git executable to find
    assert git_state() == {"commit": None, "dirty": None}
