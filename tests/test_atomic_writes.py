"""A checkpoint on disk is always whole: a kill mid-write and a full disk leave the previous
good file, a truncated file is refused with an error naming it (and a good one beside it),
and a real run's checkpoints load with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import iqa.atomic
from iqa.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from iqa.checkpoint import UnreadableCheckpointError, load_weights_only, read_checkpoint
from iqa.experiment import train
from iqa.training.checkpoint_io import SafeCheckpointIO
from tests.conftest import ROOT, TINY_RUN, compose_config

FAST_RUN = ["model=cnniqa", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1"]

# A process saving a large checkpoint over ``argv[1]`` that stops for good with half of the
# file written (so the parent can SIGKILL it there, every time).
KILLED_WRITER = """
import sys, time
import torch
import iqa.atomic
from iqa.training.checkpoint_io import SafeCheckpointIO

class HalfThenStall:
    def __init__(self, handle):
        self.handle = handle
    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        print("half written", flush=True)
        time.sleep(600)
    def __getattr__(self, name):
        return getattr(self.handle, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.handle.close()

iqa.atomic.open = lambda path, mode: HalfThenStall(open(path, mode))
state = {f"w{i}": torch.full((1_000_000,), 2.0) for i in range(16)}  # 64 MB
SafeCheckpointIO().save_checkpoint({"version": 2, "state_dict": state}, sys.argv[1])
"""


def checkpoint(version: int, numel: int = 1000) -> dict:
    return {"version": version, "state_dict": {"w": torch.full((numel,), float(version))},
            "iqa_config": {"module": {}}}


def assert_whole(path: Path, version: int) -> None:
    loaded = load_weights_only(path)
    assert loaded["version"] == version
    assert torch.equal(loaded["state_dict"]["w"], torch.full_like(loaded["state_dict"]["w"], float(version)))


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(iqa.atomic.TEMP_SUFFIX))


@pytest.mark.slow
def test_a_save_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint(checkpoint(1, 1_000_000), target)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(240, writer.kill)
    watchdog.start()
    try:
        line = writer.stdout.readline()
        assert line.strip() == "half written", writer.stderr.read()[-3000:]
        (temp,) = (target.parent / name for name in temp_files(target.parent))
        assert temp.stat().st_size > 1_000_000  # the new file was half on disk
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait() == -signal.SIGKILL
    finally:
        watchdog.cancel()
        writer.kill()
        writer.communicate()
    assert_whole(target, 1)
    assert read_checkpoint(target)["version"] == 1
    io.save_checkpoint(checkpoint(3), target)  # later saves work, and clear the dead writer's leftover
    assert_whole(target, 3)
    assert temp_files(target.parent) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), or ``None`` where this process cannot mount one."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield None
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)


class FullDisk:
    """A file handle that takes part of a write and then fails as a full disk does."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def write(self, data) -> int:
        self.handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


@pytest.mark.parametrize("disk", ["tmpfs", "simulated"])
def test_a_full_disk_leaves_the_previous_checkpoint(disk, small_disk, tmp_path, monkeypatch):
    if disk == "tmpfs" and small_disk is None:
        pytest.skip("cannot mount a tmpfs here (needs root); the simulated case covers a full disk")
    folder = (small_disk if disk == "tmpfs" else tmp_path) / "checkpoints"
    target = folder / "best.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint(checkpoint(1, 100_000), target)  # 400 kB: fits in 1 MiB
    if disk == "simulated":
        monkeypatch.setattr(iqa.atomic, "open", lambda path, mode: FullDisk(open(path, mode)), raising=False)
    with pytest.raises(OSError) as excinfo:
        io.save_checkpoint(checkpoint(2, 200_000), target)  # another 800 kB does not
    assert excinfo.value.errno == errno.ENOSPC and str(target) in str(excinfo.value)
    monkeypatch.undo()
    assert_whole(target, 1)
    assert [p.name for p in folder.iterdir()] == ["best.ckpt"]  # the partial file is gone, its space freed
    io.save_checkpoint(checkpoint(3, 100_000), target)
    assert_whole(target, 3)


@pytest.mark.parametrize("keep", [0, 0.5, 0.99])
def test_a_truncated_checkpoint_is_named_with_the_good_one_beside_it(keep, tmp_path):
    folder = tmp_path / "checkpoints"
    io = SafeCheckpointIO()
    io.save_checkpoint(checkpoint(1), folder / "last.ckpt")
    io.save_checkpoint(checkpoint(2), folder / "best.ckpt")
    damaged = folder / "best.ckpt"
    damaged.write_bytes(damaged.read_bytes()[: int(keep * damaged.stat().st_size)])
    for read in (io.load_checkpoint, read_checkpoint, load_weights_only):
        with pytest.raises(UnreadableCheckpointError) as excinfo:
            read(damaged)
        message = str(excinfo.value)
        assert str(damaged) in message and "truncated or damaged" in message, message
        assert "last.ckpt beside it is readable" in message, message
    (folder / "last.ckpt").unlink()
    with pytest.raises(UnreadableCheckpointError, match="no readable checkpoint is beside it"):
        read_checkpoint(damaged)


def test_atomic_text_and_bytes_replace_whole_files(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    atomic_write_text(path, '{"a": 1}\n')
    atomic_write_bytes(path, b'{"a": 2}\n')
    assert path.read_text() == '{"a": 2}\n'

    def fails_halfway(handle) -> None:
        handle.write(b'{"a": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fails_halfway)
    assert path.read_text() == '{"a": 2}\n' and temp_files(path.parent) == []


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir) -> Path:
    """A real tiny training run (cnniqa, 2 steps)."""
    folder = tmp_path_factory.mktemp("atomic_run")
    train(compose_config("train", TINY_RUN + FAST_RUN, folder, data_dir))
    return folder


def test_a_real_run_writes_weights_only_checkpoints(run_dir):
    folder = run_dir / "checkpoints"
    assert {"best.ckpt", "last.ckpt"} <= {p.name for p in folder.iterdir()}
    assert temp_files(folder) == []
    for name in ("best.ckpt", "last.ckpt"):
        loaded = torch.load(folder / name, map_location="cpu", weights_only=True)
        assert loaded["state_dict"] and loaded["iqa_config"]["module"]["_target_"] == "iqa.training.module.IQAModule"
        assert set(loaded["rng_states"]) == {"python", "numpy", "torch", "cuda"}


def test_resume_from_a_truncated_checkpoint_names_it(run_dir, compose_train, tmp_path):
    """The reported failure: a 0-byte last.ckpt; resuming said only ``EOFError``."""
    folder = tmp_path / "checkpoints"
    shutil.copytree(run_dir / "checkpoints", folder)
    (folder / "last.ckpt").write_bytes(b"")
    with pytest.raises(UnreadableCheckpointError) as excinfo:
        train(compose_train(*FAST_RUN, f"ckpt_path={folder / 'last.ckpt'}"))
    message = str(excinfo.value)
    assert str(folder / "last.ckpt") in message and "best.ckpt beside it is readable" in message, message


def test_a_real_run_resumes_through_the_weights_only_reader(run_dir, compose_train, monkeypatch):
    """``train.py ckpt_path=``: Lightning reads through SafeCheckpointIO, and our checkpoints
    (RNG states, config, loops, optimizer) restore under ``weights_only=True``."""
    import iqa.training.checkpoint_io as checkpoint_io

    read: list[Path] = []

    def spy(path, map_location=None):
        read.append(Path(path))
        return load_weights_only(path, map_location)

    monkeypatch.setattr(checkpoint_io, "load_weights_only", spy)
    last = run_dir / "checkpoints" / "last.ckpt"
    cfg = compose_train(*FAST_RUN, "trainer.max_epochs=2", f"ckpt_path={last}")
    results = train(cfg)
    assert last in read and results["test/n_images"] > 0
    assert torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
