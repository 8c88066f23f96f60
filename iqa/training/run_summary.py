"""What ``metrics.json`` records besides the test metrics: the selected epoch with its
validation values, and how long fitting and testing took (images per second)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from iqa.training.curves import TrainingCurves


class Throughput(L.Callback):
    """Times fitting and testing on rank 0 and counts the images they processed (all ranks).

    Training time runs from the start of each training epoch to the end of its last batch,
    data loading included and validation excluded; images are counted with their crops as one.
    """

    def __init__(self) -> None:
        self.times: dict[str, float] = {"fit": 0.0, "train": 0.0, "test": 0.0}
        self.images: dict[str, int] = {"train": 0, "test": 0}
        self._started: dict[str, float] = {}

    def _start(self, name: str) -> None:
        self._started[name] = time.perf_counter()

    def _stop(self, name: str) -> None:
        if name in self._started:
            self.times[name] += time.perf_counter() - self._started.pop(name)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("fit")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop("fit")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("train")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch is not None:
            self.images["train"] += len(batch["images"]) * trainer.world_size
        if batch_idx + 1 >= trainer.num_training_batches:
            self._stop("train")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("test")

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch is not None:
            self.images["test"] += len(batch["images"]) * trainer.world_size

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop("test")

    def summary(self) -> dict[str, float]:
        """``time/*`` entries: seconds of fitting and testing, and images per second."""
        values = {"time/fit_s": self.times["fit"], "time/test_s": self.times["test"]}
        for stage in ("train", "test"):
            if self.times[stage] > 0 and self.images[stage]:
                values[f"time/{stage}_images_per_s"] = self.images[stage] / self.times[stage]
        return {key: round(value, 3) for key, value in values.items() if value}


def run_summary(trainer: L.Trainer) -> dict[str, float]:
    """``best_epoch``, ``best/val/*`` (:class:`TrainingCurves`) and ``time/*`` (:class:`Throughput`)
    from the trainer's callbacks that provide them."""
    summary: dict[str, float] = {}
    for callback in trainer.callbacks:
        if isinstance(callback, TrainingCurves):
            summary.update(callback.best_values(trainer))
        elif isinstance(callback, Throughput):
            summary.update(callback.summary())
    return summary
