"""One run per folder: results and checkpoints stay together, and ``resume=`` continues a run.

* A run never writes into a folder that already holds another run's results: it is
  refused, naming the folder (checked before Hydra writes ``.hydra/`` and again when
  training starts).
* ``python train.py resume=<run dir>`` continues that run in its own folder from
  ``checkpoints/last.ckpt``, with the config it was started with (``resolved_config.yaml``).
  Overrides that would change the experiment are refused, naming the key; those that
  cannot change the result (:data:`RESUME_SAFE_KEYS`) are applied. Hydra's record of the
  resuming command goes to ``.hydra/resume_<time>/``, keeping the original ``.hydra/``.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from iqa.config_renames import upgrade_stored_config
from iqa.errors import UserError

LATEST = "latest"
RESULT_FILES = ("metrics.json", "run_info.json", "resolved_config.yaml")
RESUME_SAFE_KEYS = ("data.num_workers", "paths.data_dir", "data.roots", "data.cache_dir",
                    "callbacks.progress_bar", "logger", "trainer.enable_progress_bar", "debug")


class RunFolderError(UserError, RuntimeError):
    """A run folder that is taken by another run, or a ``resume=`` that cannot continue."""

    doc = "docs/reliability.md"


def is_first_process() -> bool:
    """True in the process that owns the run folder: global rank 0 of the job, as set by
    Lightning's launcher (``LOCAL_RANK``), a cluster scheduler or torchrun (``NODE_RANK``,
    ``RANK``, ``SLURM_PROCID``)."""
    return all(os.environ.get(key, "0") == "0" for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def holds_results(folder: Path) -> list[str]:
    """The result files of a run found in ``folder`` (empty when it is free to use)."""
    found = [name for name in RESULT_FILES if (folder / name).is_file()]
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir():
        found += [f"checkpoints/{p.name}" for p in sorted(checkpoints.glob("*.ckpt"))]
    return found


def refuse_if_taken(folder: Path) -> None:
    """Raise :class:`RunFolderError` when ``folder`` holds another run's results."""
    found = holds_results(folder)
    if found:
        raise RunFolderError(
            f"run folder {folder} already holds another run's results ({', '.join(found[:4])}); a run never writes "
            f"over them. Continue that run with `python train.py resume={folder}`, or choose another "
            "hydra.run.dir (the default is a new timestamped folder)")


def _resume_subdir(resume: str | None) -> str:
    """Hydra's ``output_subdir``: ``.hydra``, or ``.hydra/resume_<time>`` when resuming."""
    return ".hydra" if not resume else f".hydra/resume_{datetime.now():%Y-%m-%d_%H-%M-%S}"


def _run_dir(resume: str | None, default: str) -> str:
    """Hydra's ``run.dir``: the resumed run's folder (``latest`` links followed), else the
    default (timestamped) one."""
    return str(Path(resume).resolve()) if resume else default


def point_latest(run_dir: Path, job_name: str) -> None:
    """Point ``<parent>/latest`` at ``run_dir`` when it sits in Hydra's default layout
    (``outputs/<job>/<time>`` or ``multirun/<job>/<time>``), so the newest run has a name that
    commands can use (``resume=outputs/train/latest``). A real folder named ``latest`` is left
    alone; the link is replaced atomically."""
    run_dir = Path(run_dir)
    parent = run_dir.parent
    link = parent / LATEST
    if parent.name != job_name or run_dir.name == LATEST or (link.exists() and not link.is_symlink()):
        return
    parent.mkdir(parents=True, exist_ok=True)
    temporary = parent / f".{LATEST}.{os.getpid()}"
    try:
        temporary.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(temporary, link)
    except OSError:  # no symlinks here (some network file systems): no link
        temporary.unlink(missing_ok=True)


if not OmegaConf.has_resolver("iqa_hydra_subdir"):
    OmegaConf.register_new_resolver("iqa_hydra_subdir", _resume_subdir, use_cache=True)
    OmegaConf.register_new_resolver("iqa_run_dir", _run_dir)


def _exit_with(error: RunFolderError) -> None:
    print(f"{type(error).__name__}: {error}\nSee {error.doc}.", file=sys.stderr, flush=True)
    raise SystemExit(error.exit_code)


class RunFolderGuard(Callback):
    """Hydra callback: checks the run or sweep folder before Hydra writes into it.

    Hydra turns an exception raised by a callback into a warning and goes on, so a refusal
    exits the process (``SystemExit`` with the message) before anything is written.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_first_process():
            return
        try:
            if config.get("resume"):
                check_resumable(Path(config.resume))
            else:
                refuse_if_taken(Path(config.hydra.run.dir))
        except RunFolderError as error:
            _exit_with(error)
        point_latest(Path(config.hydra.run.dir), config.hydra.job.name)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("resume"):
            _exit_with(RunFolderError("resume= continues one run; use it without -m (one resume per command)"))
        if not is_first_process():
            return
        sweep = Path(config.hydra.sweep.dir)
        taken = [str(job.parent) for job in sorted(sweep.glob("*/.hydra")) if holds_results(job.parent)]
        if taken:
            _exit_with(RunFolderError(
                f"sweep folder {sweep} already holds finished jobs ({', '.join(taken[:3])}); choose another "
                "hydra.sweep.dir (the default is a new timestamped folder)"))
        point_latest(sweep, config.hydra.job.name)


def check_resumable(run_dir: Path) -> None:
    """Raise :class:`RunFolderError` unless ``run_dir`` is a run that can be continued."""
    needed = [run_dir / "resolved_config.yaml", run_dir / "checkpoints" / "last.ckpt"]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise RunFolderError(f"resume={run_dir}: cannot continue, {' and '.join(missing)} missing "
                             "(resume= takes the folder of a run started by train.py)")
    if (run_dir / "metrics.json").is_file():
        raise RunFolderError(f"resume={run_dir}: the run has finished (its metrics.json is written); nothing to "
                             "continue. Evaluate it with eval.py ckpt_path=<run dir>/checkpoints/best.ckpt")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _is_safe(key: str) -> bool:
    return any(key == safe or key.startswith(f"{safe}.") for safe in RESUME_SAFE_KEYS)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def resumed_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The config of the run in ``cfg.resume``, continuing from its ``last.ckpt``.

    ``overrides`` are the command's own (``key=value``); a key outside
    :data:`RESUME_SAFE_KEYS` whose value differs from the run's is refused, naming it.
    """
    run_dir = Path(cfg.resume).expanduser().resolve()
    check_resumable(run_dir)
    text = (run_dir / "resolved_config.yaml").read_text()
    original = OmegaConf.create(text)
    old_dir = str(original.paths.output_dir)
    if Path(old_dir).resolve() != run_dir:  # the folder was moved: its own paths move with it
        original = OmegaConf.create(text.replace(old_dir, str(run_dir)))
    original = OmegaConf.create(upgrade_stored_config(OmegaConf.to_container(original)))  # keys renamed since
    for key in (_override_key(o) for o in overrides):
        if key == "resume" or key.startswith("hydra."):
            continue
        new, old = OmegaConf.select(cfg, key), OmegaConf.select(original, key)
        if _is_safe(key):
            OmegaConf.update(original, key, new, force_add=True)
            continue
        if _plain(new) != _plain(old):
            raise RunFolderError(
                f"resume={run_dir}: the override {key} would change the experiment ({_plain(old)!r} in the run, "
                f"{_plain(new)!r} now); a resumed run keeps its config. Start a new run to change it")
    original.resume = str(run_dir)
    original.ckpt_path = str(run_dir / "checkpoints" / "last.ckpt")
    return original
