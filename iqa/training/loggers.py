"""Experiment loggers: CSV (default), TensorBoard, and W&B that never hangs offline.

:func:`build_loggers` instantiates the ``logger`` config group and names the run for W&B
(project, group, job type, tags, name, nested config; docs/logging.md);
:class:`FinishLoggers` writes TensorBoard's HParams entry and closes the W&B run.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from omegaconf import DictConfig, OmegaConf

from iqa.run_folder import RESUME_SAFE_KEYS
from iqa.training.curves import TrainingCurves
from iqa.training.media import Scalar, finish_runs, log_hparams

log = logging.getLogger(__name__)

__all__ = ["CSVLogger", "FinishLoggers", "TensorBoardLogger", "WandbLogger", "build_loggers",
           "wandb_credentials_available"]
TAG_GROUPS = ("model", "prompt", "data", "protocol", "experiment")
WANDB_KEYS = ("group", "job_type", "tags", "name", "config")


def wandb_credentials_available() -> bool:
    """True when an API key is in the environment or in ``~/.netrc``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_reachable(host: str = "api.wandb.ai", timeout: float = 3.0) -> bool:
    """True when a TCP connection to the W&B server opens within ``timeout`` seconds in total.

    Socket timeouts do not cover the DNS lookup, which can hang for minutes on a compute
    node without a resolver, so the probe runs in a daemon thread that is abandoned at the
    deadline.
    """
    opened: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, name="wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    reachable = bool(opened)
    if not reachable:
        log.warning("W&B: no connection to %s:443 within %g s", host, timeout)
    return reachable


class WandbLogger(_LightningWandbLogger):
    """Lightning's W&B logger, switched to offline mode when no API key is configured or
    the server cannot be reached (``WANDB_MODE=offline`` also forces it), so a run never
    hangs on the network; sync later with ``wandb sync <run dir>/wandb``."""

    def __init__(self, offline: bool | None = None, **kwargs) -> None:
        if offline is None:
            offline = (
                os.environ.get("WANDB_MODE") == "offline" or not wandb_credentials_available() or not wandb_reachable()
            )
        if offline:
            log.info("W&B: logging offline (no API key or no connection); sync later with `wandb sync`")
        super().__init__(offline=offline, **kwargs)


# -- naming runs ------------------------------------------------------------------------------
def _meaningful(key: str) -> bool:
    """Overrides that can change a result (not paths, loggers, progress bars, workers)."""
    return not key.startswith("hydra.") and not any(key == k or key.startswith(f"{k}.") for k in RESUME_SAFE_KEYS)


def _swept_keys(argv: list[str]) -> set[str]:
    """Keys given several values on a ``-m`` command line (``seed=1,2``, ``lr=range(...)``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [arg for arg in argv if "=" in arg and not arg.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(candidates)
    except Exception:  # not Hydra's grammar (a launcher's own argv): no sweep known
        return set()
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


def _is_sweep(hydra_cfg: DictConfig) -> bool:
    """A ``-m`` job (``mode`` is an enum at run time, a string in a saved ``hydra.yaml``)."""
    return getattr(hydra_cfg.get("mode"), "name", hydra_cfg.get("mode")) == "MULTIRUN"


def varying_overrides(hydra_cfg: DictConfig, argv: list[str] | None = None) -> dict[str, str]:
    """``key → value`` of the overrides that tell this run apart: in a sweep the swept keys
    (this job's values), else every override that can change the result."""
    overrides: dict[str, str] = {}
    for override in hydra_cfg.overrides.task:
        key, _, value = override.lstrip("+~").partition("=")
        if _meaningful(key):
            overrides[key] = value
    if _is_sweep(hydra_cfg):
        swept = _swept_keys(sys.argv[1:] if argv is None else argv)
        if swept:
            overrides = {k: v for k, v in overrides.items() if k in swept}
    return overrides


def run_group(hydra_cfg: DictConfig) -> str:
    """The sweep folder of a ``-m`` job, else the experiment preset, else ``model-data-prompt``."""
    choices = hydra_cfg.runtime.choices
    if _is_sweep(hydra_cfg):
        sweep = Path(hydra_cfg.runtime.output_dir).parent
        cwd = Path(hydra_cfg.runtime.cwd)
        return str(sweep.relative_to(cwd) if sweep.is_relative_to(cwd) else sweep)
    if choices.get("experiment"):
        return f"experiment={choices.experiment}"
    return "-".join(str(choices.get(group)) for group in ("model", "data", "prompt"))


def run_tags(choices: DictConfig | dict) -> list[str]:
    return [f"{group}={choices[group]}"[:64] for group in TAG_GROUPS if choices.get(group)]


def _training_run(ckpt_path: str | None) -> dict[str, Any]:
    """What is known of the run that wrote ``ckpt_path`` (``<run>/checkpoints/x.ckpt``): its
    folder, its W&B run id (from ``<run>/wandb/``) and its Hydra record (``.hydra/hydra.yaml``)."""
    if not ckpt_path:
        return {}
    folder = Path(ckpt_path).resolve().parent.parent
    runs = sorted(p.name for p in (folder / "wandb").glob("*run-*-*") if p.is_dir())
    hydra_file = folder / ".hydra" / "hydra.yaml"
    return {"dir": str(folder), "wandb_id": runs[-1].rsplit("-", 1)[1] if runs else None,
            "hydra": OmegaConf.load(hydra_file).hydra if hydra_file.is_file() else None}


def run_identity(cfg: DictConfig, job_type: str, train_config: dict | None = None) -> dict[str, Any]:
    """``wandb.init`` arguments (:data:`WANDB_KEYS`: group, job type, tags, name, the nested
    resolved config) and ``hparams`` for TensorBoard. An eval run joins its training run's
    group, takes its tags, and names it (``train_run`` in the config)."""
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    config = OmegaConf.to_container(cfg, resolve=True)
    choices = dict(hydra_cfg.runtime.choices) if hydra_cfg is not None else {}
    varying = varying_overrides(hydra_cfg) if hydra_cfg is not None else {}
    group = run_group(hydra_cfg) if hydra_cfg is not None else job_type
    name = ",".join(f"{k}={v}" for k, v in varying.items())
    seed = config.get("seed")
    if job_type == "eval":
        trained = _training_run(cfg.get("ckpt_path"))
        config["train_run"] = {"dir": trained.get("dir"), "wandb_id": trained.get("wandb_id")}
        config["train_config"] = train_config
        seed = (train_config or {}).get("seed")
        group, choices = "eval", {"data": choices.get("data")}
        if trained.get("hydra") is not None:
            group = run_group(trained["hydra"])
            choices = {**trained["hydra"].runtime.choices, "data": choices["data"] or
                       trained["hydra"].runtime.choices.get("data")}
        varying.pop("ckpt_path", None)
        run = trained.get("wandb_id") or Path(trained.get("dir", "run")).name
        name = ",".join([f"eval:{run}"] + [f"{k}={v}" for k, v in varying.items()])
    config["choices"] = {key: choices.get(key) for key in TAG_GROUPS}
    hparams = {"job_type": job_type, "seed": seed, **{k: v for k, v in config["choices"].items() if v}}
    for key, value in varying.items():  # numbers as numbers, so the HParams dashboard can sort and plot them
        resolved = OmegaConf.select(cfg, key, default=None)
        hparams.setdefault(key, resolved if isinstance(resolved, (int, float, bool)) else value)
    return {"group": group[:128], "job_type": job_type, "tags": run_tags(choices), "name": (name or group)[:128],
            "config": config, "hparams": {k: v if isinstance(v, (int, float, bool)) else str(v)
                                          for k, v in hparams.items()}}


def build_loggers(cfg: DictConfig, job_type: str, train_config: dict | None = None) -> tuple[list[Logger], dict]:
    """The loggers of ``cfg.logger`` (entries with a ``_target_``; the group's other keys are
    options such as ``project``) and the TensorBoard HParams values of the run; W&B loggers
    take :func:`run_identity`'s arguments unless their config sets them."""
    nodes = [node for node in (cfg.get("logger") or {}).values() if isinstance(node, DictConfig) and "_target_" in node]
    identity = run_identity(cfg, job_type, train_config) if nodes else {"hparams": {}}
    loggers = []
    for node in nodes:
        extra = {}
        if issubclass(get_class(node._target_), _LightningWandbLogger):
            extra = {key: identity[key] for key in WANDB_KEYS if node.get(key) is None}
        loggers.append(instantiate(node, _partial_=True, _convert_="all")(**extra))
    return loggers, identity["hparams"]


class FinishLoggers(L.Callback):
    """After testing, one TensorBoard HParams entry (``hparams`` and the names of the test
    and best-validation metrics); after the test stage, or on an error, closes the W&B run."""

    def __init__(self, hparams: dict[str, Scalar]) -> None:
        self.hparams = hparams

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = [key for key in trainer.callback_metrics if key.startswith("test/")]
        for callback in trainer.callbacks:
            if isinstance(callback, TrainingCurves):
                metrics += list(callback.best_values(trainer))
        log_hparams(trainer.loggers, self.hparams, metrics)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "test":
            finish_runs(trainer.loggers)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        finish_runs(trainer.loggers, failed=True)
