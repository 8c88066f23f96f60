"""Callbacks: checkpoint selection, early stopping, RNG state on resume, run reports."""

from __future__ import annotations

import logging
import random
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from iqa.errors import ConfigurationError
from iqa.jsonio import write_json
from iqa.training.curves import TrainingCurves
from iqa.training.divergence import StopOnDivergence, TrainingDivergedError
from iqa.training.media import log_image_file, log_table
from iqa.training.predictions import ValidationPredictions, log_predictions, prediction_rows, write_predictions_csv
from iqa.training.run_summary import run_summary

log = logging.getLogger(__name__)

__all__ = [
    "BestCheckpoint", "EarlyStoppingOnValidation", "RNGStateCallback", "StopOnDivergence", "TestReport",
    "TrainingCurves", "TrainingDivergedError", "ValidationPredictions",
]


def _has_validation(trainer: L.Trainer) -> bool:
    return bool(trainer.datamodule.val_names)


class BestCheckpoint(ModelCheckpoint):
    """Keeps the best checkpoint by ``monitor`` (validation only, never test) and ``last.ckpt``.

    ``last.ckpt`` is rewritten at the end of every epoch (Lightning rewrites it only when
    a monitored checkpoint is saved, so a kill would lose every epoch since the last
    improvement) and every ``every_n_train_steps`` steps when that is set. Without a
    validation part (``protocol.val_fraction=0``, the papers' "last epoch" runs) it keeps
    only ``last.ckpt``.
    """

    def __init__(self, *args, every_n_train_steps: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ConfigurationError(
                f"callbacks.checkpoint.every_n_train_steps must be >= 1 or null, got {every_n_train_steps}")
        self.last_every_n_train_steps = every_n_train_steps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not _has_validation(trainer):
            self.monitor = None
            self.save_top_k = 1
        super().setup(trainer, pl_module, stage)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args, **kwargs) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        steps = self.last_every_n_train_steps
        if steps and trainer.global_step % steps == 0:
            self._save_last_if_not_saved(trainer)

    def _save_last_if_not_saved(self, trainer: L.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_saved(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_saved(trainer)


class EarlyStoppingOnValidation(EarlyStopping):
    """Early stopping on a validation metric; a no-op when the run has no validation part."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.active = _has_validation(trainer)
        super().setup(trainer, pl_module, stage)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active:
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active:
            super().on_train_epoch_end(trainer, pl_module)


class RNGStateCallback(L.Callback):
    """Stores Python/NumPy/torch RNG states and the data epoch in checkpoints and restores
    them on resume, so a resumed run draws the same dropout masks, shuffles and crops as an
    uninterrupted one (the data order is a function of seed and epoch, :mod:`iqa.data.sampling`).

    The data epoch is the epoch whose order the next training batches follow: the next
    one after an end-of-epoch checkpoint, the same one (replayed from its start) after a
    mid-epoch one. Lightning builds the resumed run's first iterator before it sets the
    sampler's epoch, so the datamodule takes it from here (``resume_data_epoch``).
    States are kept as tensors, ints and lists, so checkpoints load with
    ``torch.load(weights_only=True)``.
    """

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        epoch_finished = trainer.fit_loop.epoch_loop.batch_progress.current.ready >= trainer.num_training_batches
        checkpoint["data_epoch"] = trainer.current_epoch + int(epoch_finished)
        kind, keys, position, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {
            "python": random.getstate(),
            "numpy": [kind, keys.tolist(), position, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if "data_epoch" in checkpoint and trainer.datamodule is not None:
            trainer.datamodule.resume_data_epoch = checkpoint["data_epoch"]
        states = checkpoint.get("rng_states")
        if not states:
            return
        random.setstate(tuple(states["python"][:1]) + (tuple(states["python"][1]),) + tuple(states["python"][2:]))
        kind, keys, position, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


class TestReport(L.Callback):
    """After testing, writes ``metrics.json`` (test metrics, parameter counts, the selected
    epoch with its validation values and the times, :func:`~iqa.training.run_summary.run_summary`)
    and one scatter plot per dataset
    (prediction vs MOS) into ``output_dir`` (rank 0 only), with the per-distortion report
    and ``predictions_test.csv``; figures and tables also go to the experiment loggers."""

    def __init__(self, output_dir: str, thumbnails: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.thumbnails = thumbnails

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from iqa.metrics.plots import scatter_plot

        self.output_dir.mkdir(parents=True, exist_ok=True)
        results = {**pl_module.test_results, **pl_module.parameter_counts(), **run_summary(trainer)}
        write_json(self.output_dir / "metrics.json", results, sort_keys=True)  # NaN → null
        predictions = []
        for name, (ids, predicted, mos) in pl_module.test_scores.items():
            path = scatter_plot(predicted, mos, self.output_dir / f"scatter_{name}.png", title=f"{name} (test)")
            log_image_file(trainer.loggers, f"test/scatter/{name}", path, step=trainer.global_step)
            self._per_type_report(name, trainer, ids, predicted, mos)
            predictions += prediction_rows(name, "test", partial(trainer.datamodule.record, name), ids, predicted,
                                           mos)
        write_predictions_csv(predictions, self.output_dir / "predictions_test.csv")
        log_predictions(trainer, predictions, "test", self.thumbnails)

    def _per_type_report(self, name: str, trainer: L.Trainer, ids: np.ndarray, predicted: np.ndarray,
                         mos: np.ndarray) -> None:
        """``per_type_<name>.csv`` and a PLCC bar chart when the test images carry distortion types."""
        from iqa.metrics.per_type import COLUMNS, per_type_bar_chart, per_type_metrics, write_per_type_csv

        distortions = [trainer.datamodule.record(name, int(i)).distortion for i in ids]
        if not any(distortions):
            return
        rows = per_type_metrics(distortions, predicted, mos)
        write_per_type_csv(rows, self.output_dir / f"per_type_{name}.csv")
        chart = per_type_bar_chart(rows, self.output_dir / f"per_type_{name}.png",
                                   title=f"{name} (test): PLCC per distortion")
        log_image_file(trainer.loggers, f"test/per_type/{name}", chart, step=trainer.global_step)
        table = [[round(v, 4) if isinstance(v, float) else v for v in (row[c] for c in COLUMNS)] for row in rows]
        log_table(trainer.loggers, f"test/per_type_table/{name}", COLUMNS, table, step=trainer.global_step,
                  bar=("distortion", "plcc"))
