"""What ``train.py`` and ``eval.py`` run: compose → instantiate → fit/test → report."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf
from rich.progress import track

from iqa.atomic import atomic_write_text
from iqa.checkpoint import instantiate_checkpoint_config, load_module
from iqa.contact_sheet import write_contact_sheets
from iqa.data.image_io import find_images
from iqa.errors import ConfigurationError, user_error_in
from iqa.provenance import update_status, write_run_info
from iqa.results_table import print_results_table
from iqa.run_folder import is_first_process, refuse_if_taken, resumed_config
from iqa.scorer import Scorer, load_scorer
from iqa.training.callbacks import RNGStateCallback, StopOnDivergence, TestReport
from iqa.training.checkpoint_io import SafeCheckpointIO
from iqa.training.loggers import FinishLoggers, build_loggers
from iqa.training.run_summary import Throughput
from iqa.zero_shot import zero_shot_module, zero_shot_scorer

log = logging.getLogger(__name__)
Result = TypeVar("Result")


def save_resolved_config(cfg: DictConfig, output_dir: Path) -> None:
    """Record the fully resolved config of the run (Hydra's own copy keeps interpolations)."""
    if not is_first_process():
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "resolved_config.yaml", resolve=True)


def _strategy(trainer_cfg: DictConfig) -> dict:
    """Trainer arguments, with ``ddp`` turned into ``ddp_spawn`` inside a local Hydra sweep.

    Lightning's ``ddp`` launcher re-runs the whole command line in each extra rank; inside
    ``-m`` that command is the sweep, so rank 1 would run a second, duplicated sweep.
    Spawned processes share the job's folder instead. On SLURM (submitit launcher with
    ``tasks_per_node = devices``) every rank is its own task, and ``ddp`` is kept.

    ``trainer.collective_timeout_s`` bounds every collective: when a node dies, the others
    fail with an error after at most that long instead of hanging.
    """
    kwargs = OmegaConf.to_container(trainer_cfg, resolve=True)
    timeout_s = kwargs.pop("collective_timeout_s", None)
    if kwargs.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigurationError(f"trainer.accelerator={kwargs['accelerator']} needs a CUDA GPU and this machine "
                                 "has none: use trainer=cpu")
    if kwargs.get("strategy") == "ddp" and HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        local_sweep = hydra_cfg.mode == RunMode.MULTIRUN and "submitit" not in str(hydra_cfg.launcher._target_)
        if local_sweep:
            log.info("trainer.strategy=ddp inside a local sweep: using ddp_spawn (one folder per job)")
            kwargs["strategy"] = "ddp_spawn"
    if kwargs.get("strategy") in ("ddp", "ddp_spawn") and timeout_s:
        start_method = "spawn" if kwargs["strategy"] == "ddp_spawn" else "popen"
        kwargs["strategy"] = DDPStrategy(start_method=start_method, timeout=timedelta(seconds=timeout_s))
    return kwargs


def _callbacks(cfg: DictConfig, output_dir: Path) -> list[L.Callback]:
    configured = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    return configured + [RNGStateCallback(), StopOnDivergence(), Throughput(), _test_report(cfg, output_dir)]


def _test_report(cfg: DictConfig, output_dir: Path) -> TestReport:
    return TestReport(str(output_dir), thumbnails=bool(OmegaConf.select(cfg, "logger.log_thumbnails", default=False)))


def _loggers(cfg: DictConfig, job_type: str = "train", train_config: dict | None = None) -> tuple[list, FinishLoggers]:
    """The configured loggers and the callback that closes them (docs/logging.md)."""
    loggers, hparams = build_loggers(cfg, job_type, train_config)
    return loggers, FinishLoggers(hparams)


def _prepare_run_folder(cfg: DictConfig) -> DictConfig:
    """The config to run: the resumed run's own (``resume=``), or ``cfg`` in a free folder."""
    if cfg.get("resume"):
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        return resumed_config(cfg, overrides)
    if is_first_process():
        refuse_if_taken(Path(cfg.paths.output_dir))
    return cfg


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit on the training part, select on validation, test the selected weights."""
    cfg = _prepare_run_folder(cfg)
    return _recorded(cfg, _fit_and_test)


def _recorded(cfg: DictConfig, work: Callable[[DictConfig, Path], Result]) -> Result:
    """``work(cfg, run folder)`` with the folder printed and its ``run_info.json`` status
    "running", then "finished" or "failed" (with the error)."""
    output_dir = Path(cfg.paths.output_dir)
    if is_first_process():
        print(f"Run folder: {output_dir}", flush=True)
    write_run_info(output_dir, cfg)
    try:
        results = work(cfg, output_dir)
    except BaseException as error:
        update_status(output_dir, "failed", user_error_in(error) or error)
        raise
    update_status(output_dir, "finished")
    return results


def _fit_and_test(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
    if not cfg.get("resume"):  # a resumed run keeps the record it started with
        save_resolved_config(cfg, output_dir)
    datamodule = instantiate(cfg.data)
    datamodule.check_folders()
    module = instantiate(cfg.module)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    loggers, finish = _loggers(cfg)
    trainer = L.Trainer(
        **_strategy(cfg.trainer), callbacks=_callbacks(cfg, output_dir) + [finish], logger=loggers,
        default_root_dir=str(output_dir), plugins=[SafeCheckpointIO()],
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    return _test_results(trainer, output_dir)


def evaluate(cfg: DictConfig) -> dict[str, float] | Path:
    """Test a checkpoint (``ckpt_path=``) or a zero-shot model (``model=``, :mod:`iqa.zero_shot`)
    on the checkpoint's own test split, on ``data=`` (every image), or score unlabelled
    ``images=`` into a CSV."""
    return _recorded(cfg, _evaluate)


def _evaluate(cfg: DictConfig, output_dir: Path) -> dict[str, float] | Path:
    if not cfg.get("ckpt_path") and cfg.get("model") is None:
        raise ConfigurationError("eval.py needs ckpt_path=<run>/checkpoints/best.ckpt, or model=vp_mplug|vp_mllm "
                                 "model.hf_folder=<folder> to score zero-shot")
    datamodule = None
    if cfg.get("data") is not None and not cfg.get("images"):
        datamodule = instantiate(cfg.data, datasets=[], test_on=list(cfg.data.datasets))
        datamodule.check_folders()
    if cfg.get("ckpt_path"):
        module, run_cfg = load_module(cfg.ckpt_path)
    else:
        module, run_cfg = zero_shot_module(cfg), None
    if cfg.get("images"):
        scorer = load_scorer(cfg.ckpt_path) if cfg.get("ckpt_path") else zero_shot_scorer(module)
        return score_images(scorer, cfg.images, output_dir / "scores.csv")
    if datamodule is None and run_cfg is None:
        raise ConfigurationError("zero-shot evaluation needs data=<benchmark> or images=<folder or glob>")
    if datamodule is None:
        datamodule = instantiate_checkpoint_config(run_cfg["data"], cfg.ckpt_path)
    loggers, finish = _loggers(cfg, "eval", run_cfg)
    callbacks = [Throughput(), _test_report(cfg, output_dir), finish]
    trainer = L.Trainer(**_strategy(cfg.trainer), callbacks=callbacks, logger=loggers,
                        plugins=[SafeCheckpointIO()])
    trainer.test(module, datamodule=datamodule, verbose=False)
    return _test_results(trainer, output_dir)


def score_images(scorer: Scorer, images: str, csv_path: Path) -> Path:
    """Write ``path,score,status`` rows for every image of a folder or glob (with a progress bar).

    An unreadable image gets an empty score, the reason as its status (else ``ok``) and a
    warning; a summary follows. The CSV is written atomically: an interrupted run leaves none.
    Beside it, ``contact_sheet.jpg`` and ``contact_sheet.html`` show the images best first.
    """
    paths = find_images(images)
    unreadable = 0
    scored = []
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["path", "score", "status"])
    for path in track(paths, description="scoring"):
        score, status = scorer.try_score(path)
        scored.append((path, score))
        if score is None:
            unreadable += 1
            log.warning("cannot score %s: %s", path, status)
        writer.writerow([str(path), "" if score is None else f"{score:.6f}", status])
    atomic_write_text(csv_path, rows.getvalue())
    sheets = write_contact_sheets(scored, csv_path.parent, max_pixels=scorer.max_pixels)
    log.info("contact sheets, best first: %s and %s", *sheets)
    if unreadable:
        log.warning("scored %d of %d images; %d could not be read (empty score, reason in the status column of %s)",
                    len(paths) - unreadable, len(paths), unreadable, csv_path)
    else:
        log.info("wrote %d scores to %s", len(paths), csv_path)
    return csv_path


def _test_results(trainer: L.Trainer, output_dir: Path) -> dict[str, float]:
    """The test metrics (read from the trainer, which also carries them back from
    spawned DDP processes), printed once as a table, followed by the run folder."""
    results = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if trainer.is_global_zero:
        print_results_table(results)
        print(f"Run folder: {output_dir}", flush=True)
    return results
