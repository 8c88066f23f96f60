"""Scatter plot of predictions against MOS with the fitted logistic curve."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from iqa.metrics.logistic import fit_logistic, logistic4  # noqa: E402


def scatter_plot(preds: np.ndarray, mos: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Write a PNG of prediction vs MOS; the title carries SRCC and PLCC."""
    preds, mos = np.asarray(preds, dtype=float), np.asarray(mos, dtype=float)
    figure, axes = plt.subplots(figsize=(4.5, 4), dpi=120)
    axes.scatter(preds, mos, s=8, alpha=0.6)
    params = fit_logistic(preds, mos) if len(preds) >= 4 else None
    caption = title
    if len(preds) >= 2 and np.ptp(preds) > 0 and np.ptp(mos) > 0:
        mapped = logistic4(preds, *params) if params is not None else preds
        caption += f"  SRCC {stats.spearmanr(preds, mos).statistic:.3f}  PLCC {stats.pearsonr(mapped, mos).statistic:.3f}"
    if params is not None:
        grid = np.linspace(preds.min(), preds.max(), 200)
        axes.plot(grid, logistic4(grid, *params), color="tab:red", linewidth=1.5, label="logistic fit")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlabel("prediction")
    axes.set_ylabel("MOS")
    axes.set_title(caption.strip(), fontsize=9)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
