"""Training losses and their weighted combination."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from iqa.errors import ConfigurationError


def plcc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """PLCC-induced loss (LoDa eq. 5; from Li et al.'s norm-in-norm loss).

    Both vectors are standardised; the loss averages the MSE between them and the MSE
    between the correlation-scaled prediction and the target, each divided by 4.
    """
    pred = pred.float()
    target = target.float()
    pred_std, pred_mean = torch.std_mean(pred, unbiased=False)
    target_std, target_mean = torch.std_mean(target, unbiased=False)
    pred = (pred - pred_mean) / (pred_std + eps)
    target = (target - target_mean) / (target_std + eps)
    rho = torch.mean(pred * target)
    return (F.mse_loss(pred, target) / 4 + F.mse_loss(rho * pred, target) / 4) / 2


def rank_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Pairwise hinge ranking loss over all pairs with different targets in the batch."""
    pred_diff = pred[:, None] - pred[None, :]
    sign = torch.sign(target[:, None] - target[None, :])
    valid = sign != 0
    if not valid.any():
        return pred.sum() * 0.0
    return F.relu(margin - sign * pred_diff)[valid].mean()


_LOSSES = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "plcc": plcc_loss,
    "rank": rank_loss,
}


class WeightedLoss(nn.Module):
    """Σ weight · loss over named terms, e.g. ``{"mse": 1.0, "rank": 0.3}``.

    Terms: ``mse``, ``l1``, ``smooth_l1`` (DEIQT/QMamba), ``plcc`` (LoDa eq. 5), ``rank``.
    Every crop is a sample; targets are the image's label in [0, 1].
    """

    def __init__(self, terms: dict[str, float]) -> None:
        super().__init__()
        unknown = sorted(set(terms) - set(_LOSSES))
        if unknown or not terms:
            raise ConfigurationError(f"loss.terms has unknown or no terms {unknown}; choose from {sorted(_LOSSES)}")
        self.terms = {name: float(weight) for name, weight in terms.items() if weight}

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns every weighted term and their sum under ``"loss"``."""
        parts = {name: weight * _LOSSES[name](pred.float(), target.float()) for name, weight in self.terms.items()}
        parts["loss"] = torch.stack(list(parts.values())).sum()
        return parts
