"""Whole files on disk: a file is written beside its target, flushed and fsynced, then
``os.replace``d over it, so readers (and a later run) find the old file or the complete new
one, never a half-written one: not after a kill, not on a full disk, not across filesystems.

The temporary file is hidden and named after the target and the writing process
(``.last.ckpt.<pid>.<random>.tmp``); it is removed when the write fails, and a killed
writer's leftover is removed by the next write of the same target.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Remove the temporary files of ``path`` left by writers that no longer run (killed mid-write)."""
    prefix = f".{path.name}."
    for temp in glob.glob(glob.escape(str(path.parent / prefix)) + "*" + TEMP_SUFFIX):
        pid = Path(temp).name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _is_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(temp)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (skipped where a folder cannot be opened)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` whole or not at all: ``write(handle)`` fills a temporary file in the same
    folder, which is fsynced and then replaces ``path``. On any failure (``OSError`` of a full
    disk, an exception of ``write``, an interrupt) the temporary file is removed, the previous
    ``path`` is left as it was, and the error propagates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)  # before writing: a dead writer's leftover may hold the space we need
    temp = _temp_path(path)
    try:
        with open(temp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(temp)
        if isinstance(error, OSError) and error.filename is None:  # e.g. ENOSPC from write(): name the file
            raise OSError(error.errno, f"{error.strerror}: cannot write {path}; the previous file is left as "
                                       "it was") from error
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode(encoding))
