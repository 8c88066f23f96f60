"""Every command written in README.md runs as written, so the README cannot rot.

The commands run in README order in a scratch folder that looks like a fresh clone (the
entry points, ``conf/`` and the bundled synthetic data), each ``train.py`` command with tiny
limits appended (as the README says). A command either succeeds or, where its README
comment says it ``needs`` something that is not bundled (a dataset, a GPU, weights), stops
at once with exit code 2 and a short message without a traceback that links a doc.
The install commands and the test command itself are not run here (CI runs them).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "data.num_workers=0"]
SKIPPED = ("pip install", "python -m pytest")


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[tuple[str, str]]:
    """(command, comment) for every shell command of README.md, in order; ``a && b`` gives two."""
    commands = []
    for block in readme_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command, _, comment = line.partition("  #")
            for part in command.split("&&"):
                part = " ".join(part.split())
                if part and not part.startswith(SKIPPED):
                    commands.append((part, comment.strip()))
    return commands


@pytest.fixture
def fresh_clone(tmp_path, data_dir) -> Path:
    for name in ("train.py", "eval.py", "conf", "iqa"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "data").symlink_to(data_dir)
    return tmp_path


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    if argv[:2] == ["python", "train.py"]:
        argv += TINY
    argv[0] = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def test_the_readme_lists_runnable_commands():
    commands = [command for command, _ in readme_commands()]
    assert "python train.py" in commands, "the quickstart"
    assert any(c.startswith("python train.py -m") for c in commands) and any("eval.py" in c for c in commands)
    assert "python -m pytest -q -n 2" in " ".join(readme_blocks("bash")), "the test command CI runs"


def test_every_readme_command_runs_or_says_what_to_download(fresh_clone):
    for command, comment in readme_commands():
        done = run(command, fresh_clone)
        if "needs" in comment:
            assert done.returncode == 2, f"{command}\n{done.stderr[-3000:]}"
            assert "Traceback" not in done.stderr, f"{command}\n{done.stderr[-3000:]}"
            message = [line for line in done.stderr.splitlines() if re.match(r"\w+Error: ", line)]
            assert len(message) == 1 and "docs/" in done.stderr, f"{command}: no one error linking a doc\n{done.stderr}"
        else:
            assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"


def test_the_readme_python_example_runs(fresh_clone):
    subprocess.run([sys.executable, str(ROOT / "train.py"), *TINY], cwd=fresh_clone, check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    (snippet,) = readme_blocks("python")
    done = subprocess.run([sys.executable, "-c", snippet], cwd=fresh_clone, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
