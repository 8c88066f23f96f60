"""Run provenance: ``run_info.json`` in the run folder says what ran, where, and how it ended.

    write_run_info(output_dir, cfg)             # at the start: status "running"
    update_status(output_dir, "finished")       # at the end
    update_status(output_dir, "failed", error)  # when the run raised: error type and message

The file holds the status, start/end times, the git commit and dirty flag of the source
tree, the Python and key package versions, the command line (and Hydra's overrides), the
seed, the host and the process id; each ``resume=`` of the run adds its own record under
``resumes``. A run whose process was killed stays ``running``. The writers act on rank 0
only; the file is strict JSON, written atomically.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Mapping

from iqa.jsonio import write_json
from iqa.run_folder import is_first_process

RUN_INFO = "run_info.json"
PACKAGES = ("torch", "lightning", "timm", "torchmetrics", "hydra-core", "numpy", "iqa")
PROJECT_DIR = Path(__file__).resolve().parents[1]  # the source tree (a git work tree when installed editable)
Status = Literal["running", "finished", "failed"]


def _rank_zero() -> bool:
    """Global rank 0: Lightning's rank once known, and the launcher's environment before
    (a second node also starts as Lightning's rank 0)."""
    from lightning.pytorch.utilities import rank_zero_only  # lightning is slow to import; report.py never needs it

    return getattr(rank_zero_only, "rank", 0) == 0 and is_first_process()


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def git_state(folder: Path = PROJECT_DIR) -> dict[str, str | bool | None]:
    """``{"commit", "dirty"}`` of the git work tree holding the ``iqa`` sources; both null when
    git is missing, ``folder`` is not in a repository, or ``iqa`` is not tracked there (an
    installed copy). ``dirty`` counts modified and untracked (not ignored) files."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10,
                                  env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})  # never lock the index
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "--", "iqa/__init__.py") is None:
        return {"commit": None, "dirty": None}
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"commit": commit.strip() if commit else None, "dirty": None if status is None else bool(status.strip())}


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES` (null when missing)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _command() -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None
    return {"line": shlex.join(getattr(sys, "orig_argv", sys.argv)), "argv": list(sys.argv),
            "hydra_overrides": overrides, "cwd": os.getcwd()}


def run_info(cfg: Mapping | None = None, status: Status = "running") -> dict[str, Any]:
    """The record :func:`write_run_info` writes (``cfg`` gives the seed)."""
    return {
        "status": status,
        "start_time": _now(),
        "end_time": None,
        "git": git_state(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "command": _command(),
        "seed": cfg.get("seed") if cfg is not None else None,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }


def read_run_info(output_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``run_info.json``, or None when it is missing or unreadable."""
    try:
        info = json.loads((Path(output_dir) / RUN_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def write_run_info(output_dir: str | Path, cfg: Mapping | None = None, status: Status = "running") -> Path | None:
    """Write ``<output_dir>/run_info.json`` (rank 0 only; returns its path there, else None).

    A resumed run (``cfg.resume``) keeps the record it started with and appends this
    process's record to its ``resumes`` list."""
    if not _rank_zero():
        return None
    info = run_info(cfg, status)
    previous = read_run_info(output_dir) if cfg is not None and cfg.get("resume") else None
    if previous is not None:
        previous.setdefault("resumes", []).append(info)
        previous.update(status=status, end_time=None)
        info = previous
    return write_json(Path(output_dir) / RUN_INFO, info)


def update_status(output_dir: str | Path, status: Status, error: BaseException | None = None) -> Path | None:
    """Set the status of ``<output_dir>/run_info.json`` (written fresh when missing) and, unless
    ``running``, the end time; ``error`` is recorded as ``{"type", "message"}`` (rank 0 only)."""
    if not _rank_zero():
        return None
    info = read_run_info(output_dir) or run_info()
    info["status"] = status
    info["end_time"] = None if status == "running" else _now()
    info.pop("error", None)
    if error is not None:
        info["error"] = {"type": type(error).__name__, "message": str(error)}
    return write_json(Path(output_dir) / RUN_INFO, info)
