"""Aggregate a Hydra multirun into the table IQA papers report.

    python -m iqa.report multirun/train/<date> [--out DIR]

Every job folder below the multirun folder holds Hydra's ``.hydra/overrides.yaml`` and,
once finished, ``metrics.json``. Jobs are grouped by their overrides minus the ones that
only change the split (``protocol.split_index``, ``seed``); for every ``test/`` metric
the table gives the median over splits (the usual headline number), mean ± std (sample
std) and the number of splits with a value. Jobs without ``metrics.json`` are listed as
unfinished. Writes ``report.md`` and ``report.csv`` into ``--out`` (default: the
multirun folder) and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

SPLIT_KEYS = ("protocol.split_index", "seed")
METRIC_PREFIX = "test/"


class NoFinishedJobError(RuntimeError):
    """The multirun folder holds no job with test metrics in ``metrics.json``."""


def _natural_key(path: Path) -> list:
    """Job folders in numeric order: 2 before 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def group_name(overrides: list[str]) -> str:
    """The overrides that define an experiment, i.e. all but the split-varying ones."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in SPLIT_KEYS]
    return " ".join(kept) or "(defaults)"


def collect(multirun_dir: Path) -> tuple[pd.DataFrame, list[Path]]:
    """One row per (finished job, metric) with its group, and the unfinished job folders
    (no readable ``metrics.json``) relative to ``multirun_dir``."""
    rows, unfinished = [], []
    jobs = sorted((f.parent.parent for f in multirun_dir.rglob(".hydra/overrides.yaml")), key=_natural_key)
    for job in jobs:
        try:
            metrics = json.loads((job / "metrics.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # still running, failed, or killed while writing
            unfinished.append(job.relative_to(multirun_dir))
            continue
        group = group_name(yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or [])
        for metric, value in metrics.items():
            if metric.startswith(METRIC_PREFIX) and isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"group": group, "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=["group", "metric", "value"]), unfinished


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Median, mean, std (NaN for a single split) and count per group and metric,
    groups and metrics in the order they first appear."""
    table = runs.groupby(["group", "metric"], sort=False)["value"].agg(["median", "mean", "std", "count"])
    return table.reset_index()


def _number(metric: str, value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.0f}" if metric.endswith("n_images") else f"{value:.4f}"


def to_markdown(table: pd.DataFrame, unfinished: list[Path]) -> str:
    lines = ["| group | metric | median | mean ± std | splits |", "|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        spread = f"{_number(row.metric, row.mean)} ± {_number(row.metric, row.std)}"
        lines.append(f"| {row.group} | {row.metric} | {_number(row.metric, row.median)} | {spread} | {row.count} |")
    if unfinished:
        lines += ["", f"Unfinished jobs (no readable metrics.json): {', '.join(map(str, unfinished))}"]
    return "\n".join(lines)


def report(multirun_dir: Path, out_dir: Path | None = None) -> str:
    """Write ``report.md`` and ``report.csv`` and return the Markdown."""
    if not multirun_dir.is_dir():
        raise FileNotFoundError(f"{multirun_dir} is not a folder")
    runs, unfinished = collect(multirun_dir)
    if runs.empty:
        raise NoFinishedJobError(
            f"no finished job under {multirun_dir}: no job folder (with .hydra/overrides.yaml) has a metrics.json "
            f"with test/ metrics ({len(unfinished)} unfinished)"
        )
    table = summarise(runs)
    markdown = to_markdown(table, unfinished)
    out_dir = out_dir or multirun_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(markdown + "\n")
    table.to_csv(out_dir / "report.csv", index=False)
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("multirun_dir", type=Path, help="a Hydra multirun folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.md/.csv (default: multirun_dir)")
    args = parser.parse_args(argv)
    try:
        markdown = report(args.multirun_dir, args.out)
    except (FileNotFoundError, NoFinishedJobError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
