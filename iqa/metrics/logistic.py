"""The VQEG four-parameter logistic mapping of predictions onto the MOS scale.

PLCC and RMSE measure prediction *accuracy* after removing the monotone non-linearity
between a model's scale and the subjective scale. Following the VQEG FR-TV reports
(Phase I final report, 2000; Phase II final report, 2003), a logistic curve

    f(x) = (β1 − β2) / (1 + exp(−(x − β3) / |β4|)) + β2

is fitted by non-linear least squares from predictions x to MOS, and PLCC / RMSE are
computed between f(x) and MOS. β1 and β2 are the upper and lower asymptotes (swapped
for a decreasing fit), β3 the midpoint and |β4| the spread.

The curve is constrained to run in the direction of the rank correlation (increasing
when SRCC ≥ 0, decreasing when SRCC < 0), and PLCC is reported with that direction's
sign (:func:`signed_plcc`). A fitted curve aligns any monotone predictor with MOS, so the
plain PLCC after a fit is positive even for a model that ranks images backwards (SRCC
−0.34 beside PLCC +0.45); signed, PLCC always has SRCC's sign and its size says how well
the best monotone curve fits. The fit runs on standardised predictions and MOS (so it
does not depend on either scale) from asymptotes at the MOS range, the mean prediction
as midpoint and a spread of std / 4. When it is not possible (no more images than
parameters, constant predictions) or fails, :func:`map_to_mos` falls back to the
least-squares *linear* mapping: PLCC is then the raw Pearson correlation and RMSE is
still in MOS units.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

log = logging.getLogger(__name__)

N_PARAMETERS = 4


def logistic4(x: np.ndarray, beta1: float, beta2: float, beta3: float, beta4: float) -> np.ndarray:
    """f(x) = (β1 − β2) / (1 + exp(−(x − β3) / |β4|)) + β2, overflow-free."""
    return (beta1 - beta2) * expit((x - beta3) / np.abs(beta4)) + beta2


def _rise_form(x: np.ndarray, low: float, rise: float, mid: float, spread: float) -> np.ndarray:
    """``logistic4`` with β2 = low and β1 = low + rise: the sign of ``rise`` is the direction."""
    return logistic4(x, low + rise, low, mid, spread)


def fit_logistic(preds: np.ndarray, mos: np.ndarray) -> np.ndarray | None:
    """Least-squares (β1, β2, β3, β4) from predictions to MOS, monotone in the direction
    of their Spearman correlation, or ``None`` when the fit is not possible or fails."""
    preds, mos = np.asarray(preds, dtype=np.float64), np.asarray(mos, dtype=np.float64)
    if len(preds) <= N_PARAMETERS or np.ptp(preds) == 0 or np.ptp(mos) == 0:
        return None
    (x_mean, x_std), (y_mean, y_std) = (preds.mean(), preds.std()), (mos.mean(), mos.std())
    x, y = (preds - x_mean) / x_std, (mos - y_mean) / y_std
    direction = fit_direction(preds, mos)
    initial = [y.min(), direction * np.ptp(y), 0.0, 0.25]
    rise_bounds = (0.0, np.inf) if direction > 0 else (-np.inf, 0.0)
    bounds = ([-np.inf, rise_bounds[0], -np.inf, -np.inf], [np.inf, rise_bounds[1], np.inf, np.inf])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # covariance unused
            (low, rise, mid, spread), _ = curve_fit(_rise_form, x, y, p0=initial, bounds=bounds,
                                                    method="trf", maxfev=20_000)
    except (RuntimeError, ValueError):
        return None
    params = np.array([y_std * (low + rise) + y_mean, y_std * low + y_mean, x_mean + x_std * mid, x_std * spread])
    return params if np.all(np.isfinite(params)) and spread != 0 else None


def fit_direction(preds: np.ndarray, mos: np.ndarray) -> float:
    """+1 when predictions rank with MOS (Spearman ≥ 0), else −1: the direction the
    logistic curve runs in and the sign :func:`signed_plcc` gives PLCC."""
    return -1.0 if stats.spearmanr(preds, mos).statistic < 0 else 1.0


def signed_plcc(preds: np.ndarray, mos: np.ndarray) -> float:
    """Pearson correlation between the mapped predictions and MOS, with the sign of
    the rank correlation (see the module docstring)."""
    mapped = map_to_mos(preds, mos)
    return fit_direction(preds, mos) * float(stats.pearsonr(mapped, mos).statistic)


def map_to_mos(preds: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Predictions mapped onto the MOS scale by the fitted logistic, or by the
    least-squares line when the logistic fit is not possible (see the module docstring)."""
    preds, mos = np.asarray(preds, dtype=np.float64), np.asarray(mos, dtype=np.float64)
    params = fit_logistic(preds, mos)
    if params is not None:
        return logistic4(preds, *params)
    log.debug("logistic fit not possible on %d images; using the linear mapping", len(preds))
    if len(preds) < 2 or np.ptp(preds) == 0:
        return np.full_like(preds, mos.mean() if len(mos) else np.nan)
    slope, intercept = np.polyfit(preds, mos, 1)
    return slope * preds + intercept
