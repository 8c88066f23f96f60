"""Figures, tables and summary values sent to the run's experiment loggers.

The run folder holds every figure and table as a file; these functions also hand them to
the active loggers: W&B gets ``wandb.Image`` / ``wandb.Table`` (and a native bar chart)
plus run-summary values, TensorBoard gets images, tables as Markdown text, summary
values as scalars and one HParams entry. Other loggers (CSV) get nothing. Every function
acts on global rank 0 only and never raises for a logger's sake: a dashboard must not
cost a run its results.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

Scalar = int | float | str | bool


def _wandb(loggers: Iterable[Logger]) -> list[WandbLogger]:
    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def _tensorboard(loggers: Iterable[Logger]) -> list[TensorBoardLogger]:
    return [logger for logger in loggers if isinstance(logger, TensorBoardLogger)]


def _read_png(path: Path) -> np.ndarray:
    """(H, W, 3) float image in [0, 1] of a PNG written by matplotlib."""
    from matplotlib.image import imread

    return imread(path)[..., :3]


@rank_zero_only
def log_image_file(loggers: Sequence[Logger], key: str, path: str | Path, step: int, caption: str = "") -> None:
    """A PNG of the run folder as an image under ``key`` at ``step``."""
    wandb_loggers, tensorboards = _wandb(loggers), _tensorboard(loggers)
    if not (wandb_loggers or tensorboards):
        return
    path = Path(path)
    if wandb_loggers:
        import wandb

        for logger in wandb_loggers:
            logger.log_metrics({key: wandb.Image(str(path), caption=caption or path.name)}, step=step)
    if tensorboards:
        image = _read_png(path)
        for logger in tensorboards:
            logger.experiment.add_image(key, image, global_step=step, dataformats="HWC")


def _markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


@rank_zero_only
def log_table(loggers: Sequence[Logger], key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              step: int, bar: tuple[str, str] | None = None, text_limit: int = 200) -> None:
    """A table under ``key``: ``wandb.Table`` (every row; with ``bar=(label, value)`` also
    a native bar chart under ``<key>_chart``) and, up to ``text_limit`` rows, Markdown text
    in TensorBoard (which has no tables; the run folder's CSV holds them all)."""
    wandb_loggers = _wandb(loggers)
    if wandb_loggers:
        import wandb

        for logger in wandb_loggers:
            table = wandb.Table(columns=list(columns), data=[list(row) for row in rows])
            logged = {key: table}
            if bar is not None:
                logged[f"{key}_chart"] = wandb.plot.bar(table, bar[0], bar[1], title=key)
            logger.log_metrics(logged, step=step)
    if len(rows) <= text_limit:
        for logger in _tensorboard(loggers):
            logger.experiment.add_text(key, _markdown(columns, rows), global_step=step)


@rank_zero_only
def log_summary(loggers: Sequence[Logger], values: Mapping[str, float], step: int) -> None:
    """Final values of the run: W&B run summary, TensorBoard scalars at ``step``."""
    for logger in _wandb(loggers):
        logger.experiment.summary.update(dict(values))
    for logger in _tensorboard(loggers):
        for key, value in values.items():
            logger.experiment.add_scalar(key, value, global_step=step)


@rank_zero_only
def log_hparams(loggers: Sequence[Logger], hparams: Mapping[str, Scalar], metrics: Iterable[str]) -> None:
    """One TensorBoard HParams entry: the config values that tell runs apart and the names
    of the scalar metrics (their values are the run's logged scalars)."""
    tensorboards = _tensorboard(loggers)
    if not tensorboards:
        return
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    metric_names = sorted(set(metrics))
    experiment, start, end = hparams_summary(dict(hparams), dict.fromkeys(metric_names, 0.0))
    for logger in tensorboards:
        writer = logger.experiment._get_file_writer()
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        logger.experiment.flush()


def finish_runs(loggers: Sequence[Logger], failed: bool = False) -> None:
    """Close the W&B runs of ``loggers`` (Lightning leaves them open until the process
    exits, and a later run in the same process would log into them)."""
    for logger in _wandb(loggers):
        run = getattr(logger, "_experiment", None)
        if run is not None:
            run.finish(exit_code=1 if failed else 0)
