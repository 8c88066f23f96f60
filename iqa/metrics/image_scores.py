"""Image-level IQA metrics as torchmetrics ``Metric`` classes, exact under DDP.

Each update receives one score per *image* (its crops already averaged, in the
dataset's MOS units), the image's MOS and its id. States are concatenated across
processes; ``compute`` keeps each image id once, because a ``DistributedSampler`` pads
the last batch with repeated images (``tests/test_metrics_ddp.py``: a plain Spearman
over 7 images on 2 ranks gives 0.7831 instead of 0.8571). PLCC and RMSE follow the
VQEG logistic mapping (:mod:`iqa.metrics.logistic`). With fewer than 2 images or a
constant side every value is NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from iqa.metrics.logistic import fit_direction, map_to_mos, signed_plcc


def is_well_posed(preds: np.ndarray, target: np.ndarray) -> bool:
    """Correlations need at least two images and variation on both sides."""
    return len(preds) >= 2 and np.ptp(preds) > 0 and np.ptp(target) > 0


def spearman(preds: np.ndarray, target: np.ndarray) -> float:
    return float(stats.spearmanr(preds, target).statistic)


def kendall(preds: np.ndarray, target: np.ndarray) -> float:
    """Kendall's tau-b (ties counted on both sides)."""
    return float(stats.kendalltau(preds, target).statistic)


def pearson(preds: np.ndarray, target: np.ndarray) -> float:
    return float(stats.pearsonr(preds, target).statistic)


def rmse(preds: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((preds - target) ** 2)))


class ImageScores(Metric):
    """Collects (prediction, MOS, image id) triples; ``score`` turns the deduplicated
    predictions and MOS into the metric's value."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("image_ids", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, image_ids: torch.Tensor) -> None:
        """``preds`` and ``target`` (B,) in MOS units, ``image_ids`` (B,) int64."""
        self.preds.append(preds.detach().double().flatten())
        self.target.append(target.detach().double().flatten())
        self.image_ids.append(image_ids.detach().long().flatten())

    def scores(self, with_ids: bool = False) -> tuple[np.ndarray, ...]:
        """Predictions and MOS of all processes, one entry per distinct image id, ordered
        by id (preceded by the ids with ``with_ids``). Under DDP this gathers the states:
        call it on every rank."""
        already_synced = self._is_synced  # inside compute()
        with self.sync_context(self.dist_sync_fn, should_sync=self._to_sync and not already_synced,
                               should_unsync=not already_synced):
            if isinstance(self.preds, list) and not self.preds:  # never updated
                return (np.zeros(0, dtype=np.int64),) * with_ids + (np.zeros(0), np.zeros(0))
            ids = dim_zero_cat(self.image_ids).cpu().numpy()
            preds = dim_zero_cat(self.preds).cpu().numpy()
            target = dim_zero_cat(self.target).cpu().numpy()
        _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        mos_per_id = target[first][inverse]
        if not np.array_equal(mos_per_id, target):
            clash = ids[np.flatnonzero(mos_per_id != target)[0]]
            raise ValueError(f"image id {clash} has several MOS values: ids must be unique within one metric")
        return (ids[first],) * with_ids + (preds[first], target[first])

    def compute(self) -> torch.Tensor:
        preds, target = self.scores()
        value = self.score(preds, target) if is_well_posed(preds, target) else math.nan
        return torch.tensor(value, dtype=torch.float64)

    def score(self, preds: np.ndarray, target: np.ndarray) -> float:
        """The metric on well-posed inputs; implemented by each subclass."""
        raise NotImplementedError


class SRCC(ImageScores):
    """Spearman rank-order correlation: prediction monotonicity."""

    higher_is_better = True

    def score(self, preds: np.ndarray, target: np.ndarray) -> float:
        return spearman(preds, target)


class KRCC(ImageScores):
    """Kendall rank-order correlation (tau-b): prediction monotonicity."""

    higher_is_better = True

    def score(self, preds: np.ndarray, target: np.ndarray) -> float:
        return kendall(preds, target)


class PLCC(ImageScores):
    """Pearson linear correlation: prediction accuracy. By default computed after the
    VQEG four-parameter logistic mapping of predictions to MOS and given the sign of the
    rank correlation (:mod:`iqa.metrics.logistic`; linear mapping when the fit is not
    possible); ``logistic_fit=False`` correlates the raw predictions."""

    higher_is_better = True

    def __init__(self, logistic_fit: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.logistic_fit = logistic_fit

    def score(self, preds: np.ndarray, target: np.ndarray) -> float:
        return signed_plcc(preds, target) if self.logistic_fit else pearson(preds, target)


class RMSE(ImageScores):
    """Root-mean-square error in MOS units after the VQEG logistic mapping."""

    higher_is_better = False

    def score(self, preds: np.ndarray, target: np.ndarray) -> float:
        return rmse(map_to_mos(preds, target), target)


class IQAMetrics(ImageScores):
    """All metrics from one shared state and one logistic fit: ``srcc``, ``krcc``,
    ``plcc`` (after the logistic mapping, with SRCC's sign), ``plcc_raw``, ``rmse`` (after
    the mapping) and ``n_images`` (distinct images)."""

    higher_is_better = None  # mixed: RMSE is lower-is-better

    def compute(self) -> dict[str, torch.Tensor]:
        preds, target = self.scores()
        values = dict.fromkeys(("srcc", "plcc", "plcc_raw", "krcc", "rmse"), math.nan)
        if is_well_posed(preds, target):
            mapped = map_to_mos(preds, target)
            values = {
                "srcc": spearman(preds, target),
                "plcc": fit_direction(preds, target) * pearson(mapped, target),
                "plcc_raw": pearson(preds, target),
                "krcc": kendall(preds, target),
                "rmse": rmse(mapped, target),
            }
        results = {key: torch.tensor(value, dtype=torch.float64) for key, value in values.items()}
        results["n_images"] = torch.tensor(len(preds))
        return results
