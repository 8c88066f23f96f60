"""The one results table a run prints at its end: one row per test set, the paper's columns."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

COLUMNS = (("srcc", "SRCC"), ("plcc", "PLCC"), ("krcc", "KRCC"), ("rmse", "RMSE"), ("n_images", "images"))


def results_rows(results: dict[str, float], stage: str = "test") -> dict[str, dict[str, float]]:
    """``{"stage/metric": v}`` or ``{"stage/<set>/metric": v}`` → ``{set: {metric: v}}``
    (the single test set is named ``stage``)."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in results.items():
        parts = key.split("/")
        if parts[0] != stage or len(parts) not in (2, 3):
            continue
        name = parts[1] if len(parts) == 3 else stage
        rows.setdefault(name, {})[parts[-1]] = value
    return rows


def _cell(metric: str, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{int(value)}" if metric == "n_images" else f"{value:.4f}"


def print_results_table(results: dict[str, float], stage: str = "test", console: Console | None = None) -> None:
    """Print ``results`` as a table (rows: test sets, columns: SRCC PLCC KRCC RMSE images)."""
    table = Table(title=f"{stage} results")
    table.add_column("set")
    for _, header in COLUMNS:
        table.add_column(header, justify="right")
    for name, values in results_rows(results, stage).items():
        table.add_row(name, *(_cell(metric, values.get(metric)) for metric, _ in COLUMNS))
    (console or Console()).print(table)
