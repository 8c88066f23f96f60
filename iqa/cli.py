"""What the entry points do around their task: a quiet console, user errors on one screen, and
sweeps that go past a failed job and name it at the end.

* A renamed config key or option on the command line (:mod:`iqa.config_renames`) is refused
  before Hydra composes, naming the new key (:func:`refuse_renamed_overrides`).
* A :class:`~iqa.errors.UserError` (a config value, a data file, weights, a run folder; also
  when Hydra's ``instantiate`` wrapped it) prints its message and the doc that explains the
  fix, without a traceback, and exits with its code (2; 1 for a diverged run).
  ``debug=true`` or ``HYDRA_FULL_ERROR=1`` re-raises it with the traceback.
* In a sweep (``-m``) a failed job is logged (a traceback only when it is not a user error)
  and the sweep goes on; :class:`SweepSummary` lists the failed jobs at the end, from their
  ``run_info.json``, and exits with code 1.
* :func:`~iqa.runtime.keep_freed_memory` stops glibc from unmapping freed tensors.
* :func:`quiet_third_party` drops Lightning's advertising tips and one deprecation warning
  torch raises inside Lightning, by their exact text; every other warning still shows.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from iqa.config_renames import check_overrides
from iqa.errors import ConfigurationError, UserError, user_error_in
from iqa.provenance import read_run_info
from iqa.runtime import keep_freed_memory

log = logging.getLogger(__name__)

Result = TypeVar("Result")
TIP_PREFIX = "💡 Tip:"  # Lightning's litlogger / litmodels advertisements
TRACEBACK_HINT = "Run with debug=true (or HYDRA_FULL_ERROR=1) for the traceback."


class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP_PREFIX)


def quiet_third_party() -> None:
    """Filter, at their source, the messages that every run printed and no user acts on."""
    for name in ("lightning.fabric.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())
    # torch deprecated LeafSpec; Lightning 2.6's pytree helper still builds one on every batch
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)


def format_user_error(error: UserError) -> str:
    """The message, the doc that explains the fix (unless the message links one) and how to
    see the traceback."""
    lines = [f"{type(error).__name__}: {error}"]
    if "docs/" not in str(error) and "README" not in str(error):
        lines.append(f"See {error.doc}.")
    lines.append(TRACEBACK_HINT)
    return "\n".join(lines)


def refuse_renamed_overrides() -> None:
    """Exit (code 2) naming the new key when ``sys.argv`` uses a renamed one, as a user error."""
    overrides = sys.argv[1:]
    try:
        check_overrides(overrides)
    except ConfigurationError as error:
        if "debug=true" in overrides or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(format_user_error(error), file=sys.stderr, flush=True)
        raise SystemExit(error.exit_code) from None


def _debugging(cfg: DictConfig) -> bool:
    return bool(cfg.get("debug")) or os.environ.get("HYDRA_FULL_ERROR") == "1"


def _sweeping() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_task(task: Callable[[DictConfig], Result], cfg: DictConfig) -> Result | None:
    """Run ``task(cfg)`` as an entry point does (see the module docstring)."""
    quiet_third_party()
    keep_freed_memory()
    try:
        return task(cfg)
    except Exception as error:
        user_error = user_error_in(error)
        if _debugging(cfg) or (user_error is None and not _sweeping()):
            raise
        if user_error is None:
            log.exception("job %s failed", cfg.paths.output_dir)
            return None
        print(format_user_error(user_error), file=sys.stderr, flush=True)
        if _sweeping():
            return None
        raise SystemExit(user_error.exit_code) from None


class SweepSummary(Callback):
    """Hydra callback: after a sweep, names every job that did not finish (from its
    ``run_info.json``) and exits with code 1 when there is one."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        jobs = sorted(path.parent for path in sweep.glob("*/.hydra"))
        failed = []
        for job in jobs:
            info = read_run_info(job) or {}
            if info.get("status") != "finished":
                error = info.get("error") or {}
                reason = (f"{error.get('type', '')}: {error.get('message', '')}" if error
                          else info.get("status", "no run_info.json"))
                failed.append(f"  {job}: {reason}")
        if failed:
            print(f"{len(failed)} of {len(jobs)} jobs in {sweep} did not finish:\n" + "\n".join(failed),
                  file=sys.stderr, flush=True)
            raise SystemExit(1)
        log.info("all %d jobs of %s finished", len(jobs), sweep)
