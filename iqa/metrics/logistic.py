"""The VQEG four-parameter logistic mapping of predictions to MOS before PLCC / RMSE.

f(x) = (β1 − β2) / (1 + exp(−(x − β3) / |β4|)) + β2  (VQEG FR-TV Phase II final report),
fitted by least squares; it removes the monotone non-linearity between a model's
scale and the subjective scale, as the IQA literature reports PLCC.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit


def logistic4(x: np.ndarray, beta1: float, beta2: float, beta3: float, beta4: float) -> np.ndarray:
    """The four-parameter logistic curve."""
    return (beta1 - beta2) * expit((x - beta3) / np.abs(beta4)) + beta2


def fit_logistic(preds: np.ndarray, mos: np.ndarray) -> np.ndarray | None:
    """Fitted parameters, or ``None`` when the fit does not converge."""
    initial = [mos.max(), mos.min(), float(np.mean(preds)), float(np.std(preds)) / 4 or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(logistic4, preds, mos, p0=initial, maxfev=20000, method="trf")
    except (RuntimeError, ValueError):
        return None
    return params if np.all(np.isfinite(params)) else None


def map_to_mos(preds: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Predictions mapped onto the MOS scale by the fitted logistic (raw if the fit fails)."""
    params = fit_logistic(preds, mos)
    if params is None:
        warnings.warn("logistic fit did not converge; PLCC/RMSE use raw predictions", RuntimeWarning, stacklevel=2)
        return preds
    return logistic4(preds, *params)
