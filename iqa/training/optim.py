"""Optimizer and learning-rate schedule specifications (built once the parameters exist)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from iqa.errors import ConfigurationError


@dataclass
class OptimizerSpec:
    """``name``: ``sgd`` or ``adamw``; only trainable parameters are passed to it."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    def build(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.name == "sgd":
            return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.name == "adamw":
            return torch.optim.AdamW(parameters, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay)
        raise ConfigurationError(f"optimizer.name must be 'sgd' or 'adamw', got {self.name!r}")


@dataclass
class SchedulerSpec:
    """Learning-rate multiplier, stepped every iteration.

    ``name``: ``constant``, ``cosine`` (to ``min_lr_ratio`` at the end of training) or
    ``step`` (× ``gamma`` every ``step_epochs`` epochs, DEIQT/QMamba); all after a linear
    warm-up of ``warmup_epochs`` (fractions allowed).
    """

    name: str = "constant"
    warmup_epochs: float = 0.0
    step_epochs: int = 1
    gamma: float = 0.1
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in ("constant", "cosine", "step"):
            raise ConfigurationError(f"scheduler.name must be constant, cosine or step, got {self.name!r}")

    def multiplier(self, step: int, steps_per_epoch: int, total_steps: int) -> float:
        warmup_steps = self.warmup_epochs * steps_per_epoch
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if self.name == "cosine":
            progress = (step - warmup_steps) / max(1.0, total_steps - warmup_steps)
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if self.name == "step":
            return self.gamma ** (step // (self.step_epochs * steps_per_epoch))
        return 1.0

    def build(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int):
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: self.multiplier(step, max(1, steps_per_epoch), max(1, total_steps))
        )
