"""Stop a diverged run: a non-finite training loss (or gradient) raises instead of training on NaN."""

from __future__ import annotations

import lightning as L
import torch
from torch.optim import Optimizer

from iqa.errors import UserError


class TrainingDivergedError(UserError, RuntimeError):
    """The training loss or the gradients became NaN or infinite (a result, not a bug: exit code 1)."""

    doc = "docs/reliability.md"
    exit_code = 1


class StopOnDivergence(L.Callback):
    """Raises :class:`TrainingDivergedError` before a non-finite value reaches the weights.

    * the training loss, before its backward pass (every rank decides together under DDP);
    * the gradients, when ``trainer.gradient_clip_val`` is set, before clipping and the
      optimiser step (for finiteness the same as after norm clipping; value clipping turns
      ±inf into finite values, so only NaN counts then). Skipped under a ``GradScaler``
      (fp16), which skips such steps itself.

    The message names the optimiser step, the epoch and the learning rates, with a hint.
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        diverged = not bool(torch.isfinite(loss.detach()).all())
        if trainer.strategy.reduce_boolean_decision(diverged, all=False):
            value = f"{loss.item():.4g}" if diverged and loss.numel() == 1 else "non-finite on another rank"
            raise TrainingDivergedError(self._message(trainer, f"training loss is {value}"))

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        if not trainer.gradient_clip_val or getattr(trainer.precision_plugin, "scaler", None) is not None:
            return
        bad = torch.isnan if trainer.gradient_clip_algorithm == "value" else lambda g: ~torch.isfinite(g)
        flags = [bad(p.grad).any() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if flags and bool(torch.stack(flags).any()):  # one device sync
            raise TrainingDivergedError(self._message(trainer, "gradients are not finite"))

    @staticmethod
    def _message(trainer: L.Trainer, what: str) -> str:
        rates = sorted({float(group["lr"]) for optimizer in trainer.optimizers for group in optimizer.param_groups})
        clipping = (f" (gradient clipping is already on: trainer.gradient_clip_val={trainer.gradient_clip_val})"
                    if trainer.gradient_clip_val else " or enable gradient clipping (e.g. trainer.gradient_clip_val=1.0)")
        return (
            f"training diverged: {what} at global step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"learning rate {', '.join(f'{lr:.3g}' for lr in rates)}); lower optimizer.lr{clipping}"
        )
