"""Metrics per distortion type (LoDa Fig. 4: PLCC per KADID-10k distortion) as a CSV table and
a bar chart, for test sets whose images carry a distortion type (synthetic-distortion datasets)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from iqa.metrics.image_scores import IQAMetrics

COLUMNS = ("distortion", "n_images", "srcc", "plcc", "krcc", "rmse")


def per_type_metrics(distortions: Sequence[str | None], preds: np.ndarray, mos: np.ndarray) -> list[dict]:
    """One row per distortion type (images without a type, e.g. references, are left out), with
    the same metrics as the whole test set (PLCC/RMSE after each type's own logistic fit)."""
    labels = np.array([d if d is not None else "" for d in distortions], dtype=object)
    rows = []
    for distortion in sorted({d for d in distortions if d is not None}):
        chosen = labels == distortion
        metric = IQAMetrics(sync_on_compute=False)  # already gathered; rank 0 alone calls this under DDP
        metric.update(torch.as_tensor(preds[chosen]), torch.as_tensor(mos[chosen]),
                      torch.as_tensor(np.flatnonzero(chosen)))
        values = {key: float(value) for key, value in metric.compute().items()}
        rows.append({"distortion": distortion, "n_images": int(chosen.sum()),
                     **{key: values[key] for key in COLUMNS[2:]}})
    return rows


def write_per_type_csv(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    return path


def per_type_bar_chart(rows: list[dict], path: str | Path, metric: str = "plcc", title: str = "") -> Path:
    """A PNG bar chart of ``metric`` per distortion type (NaN where a type has too few images)."""
    figure = Figure(figsize=(max(4.0, 0.35 * len(rows) + 1.5), 3.5), dpi=120, layout="tight")
    axes = figure.add_subplot()
    values = [row[metric] for row in rows]
    axes.bar(range(len(rows)), [0.0 if math.isnan(v) else v for v in values], color="tab:blue")
    axes.set_xticks(range(len(rows)), [row["distortion"] for row in rows], rotation=60, ha="right", fontsize=7)
    axes.set_ylabel(metric.upper())
    axes.set_ylim(min(0.0, *[v for v in values if not math.isnan(v)] or [0.0]), 1.0)
    axes.set_title(title, fontsize=9)
    path = Path(path)
    figure.savefig(path, format="png")
    return path
