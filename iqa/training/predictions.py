"""Per-image predictions: ``predictions_<split>.csv`` in the run folder and the same rows as
a table in the experiment loggers (:func:`iqa.training.media.log_table`).

One row per image: id, path, dataset, split, distortion type (empty where the dataset
has none), MOS, the prediction (MOS units) and the prediction after the dataset's VQEG
logistic fit (the mapping PLCC and RMSE use; empty where the fit is not possible).
Floats are rounded to 6 decimals, so the CSV and the logged table hold the same values.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import WandbLogger

from iqa.data.records import ImageRecord
from iqa.metrics.logistic import fit_logistic, logistic4
from iqa.training.media import log_image_file, log_table

COLUMNS = ("image_id", "path", "dataset", "split", "distortion", "mos", "prediction", "prediction_mapped")
NUMERIC = ("mos", "prediction", "prediction_mapped")


def prediction_rows(name: str, split: str, record_of: Callable[[int], ImageRecord], ids: np.ndarray,
                    preds: np.ndarray, mos: np.ndarray) -> list[list]:
    """Rows of :data:`COLUMNS` for one dataset's scores; ``record_of(image_id)`` gives each image's
    path and distortion (:meth:`iqa.data.datamodule.IQADataModule.record`)."""
    params = fit_logistic(preds, mos)
    mapped = logistic4(preds, *params) if params is not None else np.full(len(preds), np.nan)
    rows = []
    for image_id, pred, target, fitted in zip(ids, preds, mos, mapped):
        record = record_of(int(image_id))
        rows.append([int(image_id), str(record.path), name, split, record.distortion,
                     round(float(target), 6), round(float(pred), 6),
                     None if np.isnan(fitted) else round(float(fitted), 6)])
    return rows


def write_predictions_csv(rows: Sequence[Sequence], path: str | Path) -> Path:
    """The rows under a header of :data:`COLUMNS` (``None`` as an empty field)."""
    path = Path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(["" if value is None else value for value in row] for row in rows)
    return path


def log_predictions(trainer: L.Trainer, rows: list[list], split: str, thumbnails: bool = False) -> None:
    """The rows as the ``<split>/predictions`` table (with a 96-pixel ``thumbnail`` column
    of each image when ``thumbnails``; W&B only)."""
    columns = list(COLUMNS)
    if thumbnails and any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        columns.append("thumbnail")
        rows = [row + [_thumbnail(row[1])] for row in rows]
    log_table(trainer.loggers, f"{split}/predictions", columns, rows, step=trainer.global_step, text_limit=0)


def _thumbnail(path: str):
    import wandb
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((96, 96))
        return wandb.Image(image)


class ValidationPredictions(L.Callback):
    """Per-image validation predictions: kept from every validation epoch, written as
    ``predictions_val.csv`` and logged as ``val/predictions`` at the end of fitting (the
    final validation); with ``scatter`` also ``scatter_<name>_val.png`` logged per epoch."""

    def __init__(self, output_dir: str, scatter: bool = False, thumbnails: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.scatter = scatter
        self.thumbnails = thumbnails
        self.rows: list[list] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not pl_module.val_metrics:
            return
        scores = {name: metric.scores(with_ids=True) for name, metric in pl_module.val_metrics.items()}  # all ranks
        if not trainer.is_global_zero:
            return
        self.rows = []
        for name, (ids, preds, mos) in scores.items():
            self.rows += prediction_rows(name, "val", partial(trainer.datamodule.record, name), ids, preds, mos)
            if self.scatter:
                from iqa.metrics.plots import scatter_plot

                self.output_dir.mkdir(parents=True, exist_ok=True)
                path = scatter_plot(preds, mos, self.output_dir / f"scatter_{name}_val.png",
                                    title=f"{name} (validation, epoch {trainer.current_epoch})")
                log_image_file(trainer.loggers, f"val/scatter/{name}", path, step=trainer.global_step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.rows:
            return
        write_predictions_csv(self.rows, self.output_dir / "predictions_val.csv")
        log_predictions(trainer, self.rows, "val", self.thumbnails)
