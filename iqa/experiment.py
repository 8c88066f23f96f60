"""What ``train.py`` and ``eval.py`` run: compose → instantiate → fit/test → report."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.progress import track

from iqa.checkpoint import load_module
from iqa.scorer import find_images, load_scorer
from iqa.training.callbacks import RNGStateCallback, TestReport

log = logging.getLogger(__name__)


@rank_zero_only
def save_resolved_config(cfg: DictConfig, output_dir: Path) -> None:
    """Record the fully resolved config of the run (Hydra's own copy keeps interpolations)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "resolved_config.yaml", resolve=True)


def _strategy(trainer_cfg: DictConfig) -> dict:
    """Trainer arguments, with ``ddp`` turned into ``ddp_spawn`` inside a local Hydra sweep.

    Lightning's ``ddp`` launcher re-runs the whole command line in each extra rank; inside
    ``-m`` that command is the sweep, so rank 1 would run a second, duplicated sweep.
    Spawned processes share the job's folder instead. On SLURM (submitit launcher with
    ``tasks_per_node = devices``) every rank is its own task, and ``ddp`` is kept.
    """
    kwargs = OmegaConf.to_container(trainer_cfg, resolve=True)
    if kwargs.get("strategy") == "ddp" and HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        local_sweep = hydra_cfg.mode == RunMode.MULTIRUN and "submitit" not in str(hydra_cfg.launcher._target_)
        if local_sweep:
            log.info("trainer.strategy=ddp inside a local sweep: using ddp_spawn (one folder per job)")
            kwargs["strategy"] = "ddp_spawn"
    return kwargs


def _callbacks(cfg: DictConfig, output_dir: Path) -> list[L.Callback]:
    configured = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    return configured + [RNGStateCallback(), TestReport(str(output_dir))]


def _loggers(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit on the training part, select on validation, test the selected weights."""
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    save_resolved_config(cfg, output_dir)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    trainer = L.Trainer(
        **_strategy(cfg.trainer), callbacks=_callbacks(cfg, output_dir), logger=_loggers(cfg),
        default_root_dir=str(output_dir),
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
    return _test_results(trainer)


def evaluate(cfg: DictConfig) -> dict[str, float] | Path:
    """Test a checkpoint on its own test split, on ``data=`` (every image), or score
    unlabelled ``images=`` into a CSV."""
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("images"):
        return score_images(cfg.ckpt_path, cfg.images, output_dir / "scores.csv")
    module, run_cfg = load_module(cfg.ckpt_path)
    if cfg.get("data") is not None:
        datamodule = instantiate(cfg.data, datasets=[], test_on=list(cfg.data.datasets))
    else:
        datamodule = instantiate(OmegaConf.create(run_cfg["data"]))
    trainer = L.Trainer(**_strategy(cfg.trainer), callbacks=[TestReport(str(output_dir))], logger=False)
    trainer.test(module, datamodule=datamodule)
    return _test_results(trainer)


def score_images(ckpt_path: str, images: str, csv_path: Path) -> Path:
    """Write ``path,score`` rows for every image of a folder or glob (with a progress bar)."""
    scorer = load_scorer(ckpt_path)
    paths = find_images(images)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score"])
        for path in track(paths, description="scoring"):
            writer.writerow([str(path), f"{scorer(path):.6f}"])
    log.info("wrote %d scores to %s", len(paths), csv_path)
    return csv_path


def _test_results(trainer: L.Trainer) -> dict[str, float]:
    """The test metrics (read from the trainer, which also carries them back from
    spawned DDP processes), printed once."""
    results = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if trainer.is_global_zero:
        print(json.dumps({k: round(v, 4) for k, v in sorted(results.items())}, indent=2))
    return results
