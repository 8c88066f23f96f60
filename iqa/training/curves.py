"""``curves.png`` in the run folder: training loss and validation SRCC/PLCC per epoch, with
the epoch whose weights were selected (the best checkpoint's) marked.

Epochs are numbered from 0, as Lightning logs them. The history lives in the callback's
state, which Lightning stores in every checkpoint, so a resumed run draws all its epochs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from iqa.training.media import log_image_file, log_summary

VAL_KEYS = ("val/srcc", "val/plcc")


def best_epoch(history: list[dict[str, float]], monitor: str | None, mode: str = "max") -> int | None:
    """The epoch with the best ``monitor`` value, or the last epoch without one (the weights
    a run without validation tests); None before the first epoch."""
    scored = [row for row in history if monitor and math.isfinite(row.get(monitor, math.nan))]
    if scored:
        choose = max if mode == "max" else min
        return int(choose(scored, key=lambda row: row[monitor])["epoch"])
    return int(history[-1]["epoch"]) if history and not monitor else None


def curves_figure(history: list[dict[str, float]], best: int | None, title: str = "") -> Figure:
    """Loss per epoch (left) and validation SRCC/PLCC per epoch (right), best epoch dashed."""
    figure = Figure(figsize=(8, 3.2), dpi=110, layout="tight")
    loss_axes, val_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    loss_axes.plot(epochs, [row.get("train/loss", math.nan) for row in history], marker="o", markersize=3)
    loss_axes.set(xlabel="epoch", ylabel="training loss (epoch mean)", title="training loss")
    for key in VAL_KEYS:
        points = [(row["epoch"], row[key]) for row in history if key in row]
        if points:
            val_axes.plot(*zip(*points), marker="o", markersize=3, label=key.split("/")[1].upper())
    val_axes.set(xlabel="epoch", ylabel="SRCC / PLCC", title="validation")
    if not val_axes.lines:
        val_axes.text(0.5, 0.5, "no validation part", ha="center", va="center", transform=val_axes.transAxes)
    if best is not None:
        for axes in (loss_axes, val_axes):
            axes.axvline(best, color="tab:red", linestyle="--", linewidth=1, label=f"best epoch ({best})")
    for axes in (loss_axes, val_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axes.lines:
            axes.legend(loc="best", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure


class TrainingCurves(L.Callback):
    """Records the epoch mean of the training loss (rank 0's batches under DDP) and the
    validation SRCC/PLCC (and the best checkpoint's monitored value), redraws ``curves.png``
    after every epoch, and at the end of fitting logs the figure and ``best_epoch`` with the
    validation values of that epoch (``best/val/*``) to the experiment loggers."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self.history: list[dict[str, float]] = []
        self._loss_sum = torch.zeros(())
        self._loss_count = 0
        self._validation: dict[str, float] = {}

    @property
    def path(self) -> Path:
        return self.output_dir / "curves.png"

    def _monitor(self, trainer: L.Trainer) -> tuple[str | None, str]:
        checkpoint = trainer.checkpoint_callback
        return (checkpoint.monitor, checkpoint.mode) if checkpoint is not None else (None, "max")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loss_sum = torch.zeros((), device=pl_module.device)
        self._loss_count = 0
        self._validation = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):  # no synchronisation with the device here
            self._loss_sum = self._loss_sum + loss.detach().float()
            self._loss_count += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        monitor, _ = self._monitor(trainer)
        keys = set(VAL_KEYS) | ({monitor} if monitor else set())
        self._validation = {k: float(trainer.callback_metrics[k]) for k in keys if k in trainer.callback_metrics}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch, **self._validation}
        if self._loss_count:
            row["train/loss"] = float(self._loss_sum) / self._loss_count
        self.history = [r for r in self.history if r["epoch"] != row["epoch"]] + [row]
        if trainer.is_global_zero:
            self.draw(trainer)

    def draw(self, trainer: L.Trainer) -> Path:
        """Write ``curves.png`` from the history so far."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        figure = curves_figure(self.history, best_epoch(self.history, *self._monitor(trainer)))
        figure.savefig(self.path, format="png")
        return self.path

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        log_image_file(trainer.loggers, "curves", self.draw(trainer), step=trainer.global_step)
        best = self.best_values(trainer)
        if best:
            log_summary(trainer.loggers, best, step=trainer.global_step)

    def best_values(self, trainer: L.Trainer) -> dict[str, float]:
        """``best_epoch`` and ``best/val/*`` (empty before the first epoch)."""
        best = best_epoch(self.history, *self._monitor(trainer))
        if best is None:
            return {}
        row = next(r for r in self.history if r["epoch"] == best)
        return {"best_epoch": best, **{f"best/{k}": v for k, v in row.items() if k.startswith("val/")}}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
