"""Scatter plot of predictions against MOS with the fitted VQEG logistic curve.

Drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas): no pyplot, no display,
no global backend switch, safe on headless cluster nodes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from iqa.metrics.image_scores import is_well_posed, pearson, spearman
from iqa.metrics.logistic import fit_logistic, logistic4


def scatter_plot(preds: np.ndarray, mos: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Write a PNG of prediction (x) vs MOS (y) with the logistic fit; the title
    carries SRCC and PLCC (after the fit, as :class:`~iqa.metrics.IQAMetrics`)."""
    preds, mos = np.asarray(preds, dtype=np.float64), np.asarray(mos, dtype=np.float64)
    figure = Figure(figsize=(4.5, 4), dpi=120, layout="tight")
    axes = figure.add_subplot()
    axes.scatter(preds, mos, s=8, alpha=0.6)
    params = fit_logistic(preds, mos)
    if params is not None:
        grid = np.linspace(preds.min(), preds.max(), 200)
        axes.plot(grid, logistic4(grid, *params), color="tab:red", linewidth=1.5, label="logistic fit")
        axes.legend(loc="lower right", fontsize=8)
    if is_well_posed(preds, mos):
        mapped = logistic4(preds, *params) if params is not None else preds
        values = f"SRCC {spearman(preds, mos):.3f}  PLCC {pearson(mapped, mos):.3f}  n={len(preds)}"
    else:
        values = f"SRCC n/a  PLCC n/a  n={len(preds)}"
    axes.set_title(f"{title}\n{values}" if title else values, fontsize=9)
    axes.set_xlabel("prediction (MOS units)")
    axes.set_ylabel("MOS")
    path = Path(path)
    figure.savefig(path, format="png")
    return path
