"""The VQEG four-parameter logistic mapping of predictions onto the MOS scale.

PLCC and RMSE measure prediction *accuracy* after removing the monotone non-linearity
between a model's scale and the subjective scale. Following the VQEG FR-TV reports
(Phase I final report, 2000; Phase II final report, 2003), a logistic curve

    f(x) = (β1 − β2) / (1 + exp(−(x − β3) / |β4|)) + β2

is fitted by non-linear least squares from predictions x to MOS, and PLCC / RMSE are
computed between f(x) and MOS. β1 and β2 are the upper and lower asymptotes (swapped
for a decreasing fit), β3 the midpoint and |β4| the spread. The fit starts from
β = (max MOS, min MOS, mean x, std x / 4): asymptotes at the MOS range and a
slope matched to the spread of the predictions.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

N_PARAMETERS = 4


def logistic4(x: np.ndarray, beta1: float, beta2: float, beta3: float, beta4: float) -> np.ndarray:
    """f(x) = (β1 − β2) / (1 + exp(−(x − β3) / |β4|)) + β2, overflow-free."""
    return (beta1 - beta2) * expit((x - beta3) / np.abs(beta4)) + beta2


def fit_logistic(preds: np.ndarray, mos: np.ndarray) -> np.ndarray | None:
    """Least-squares (β1, β2, β3, β4) from predictions to MOS, or ``None`` when the fit
    is not possible (no more images than parameters, constant predictions) or fails."""
    preds, mos = np.asarray(preds, dtype=np.float64), np.asarray(mos, dtype=np.float64)
    if len(preds) <= N_PARAMETERS or np.ptp(preds) == 0:
        return None
    initial = [mos.max(), mos.min(), preds.mean(), preds.std() / 4]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # covariance unused
            params, _ = curve_fit(logistic4, preds, mos, p0=initial, method="trf", maxfev=20_000)
    except (RuntimeError, ValueError):
        return None
    return params if np.all(np.isfinite(params)) and params[3] != 0 else None


def map_to_mos(preds: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Predictions mapped onto the MOS scale by the fitted logistic; the raw
    predictions, with a warning, when the fit is not possible."""
    params = fit_logistic(preds, mos)
    if params is None:
        warnings.warn(
            f"logistic fit failed on {len(preds)} images; PLCC/RMSE use the raw predictions",
            RuntimeWarning,
            stacklevel=2,
        )
        return np.asarray(preds, dtype=np.float64)
    return logistic4(np.asarray(preds, dtype=np.float64), *params)
