"""Aggregate a Hydra multirun into the table the papers report.

    python -m iqa.report multirun/train/<date> [--out DIR]

Jobs are grouped by their overrides minus the split-varying ones (``protocol.split_index``,
``seed``); for every metric of ``metrics.json`` the table gives the median, mean ± std and
the number of splits. Writes ``report.md`` and ``report.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

SPLIT_KEYS = ("protocol.split_index", "seed")


def collect(sweep_dir: Path) -> tuple[pd.DataFrame, list[Path]]:
    """One row per finished job (its group and metrics), and the unfinished job folders."""
    rows, unfinished = [], []
    for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
        job = overrides_file.parent.parent
        metrics_file = job / "metrics.json"
        if not metrics_file.is_file():
            unfinished.append(job)
            continue
        overrides = yaml.safe_load(overrides_file.read_text()) or []
        group = " ".join(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in SPLIT_KEYS) or "(defaults)"
        metrics = json.loads(metrics_file.read_text())
        rows += [{"group": group, "metric": k, "value": v} for k, v in metrics.items() if k.startswith("test/")]
    return pd.DataFrame(rows, columns=["group", "metric", "value"]), unfinished


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Median, mean, std and count per group and metric."""
    table = runs.groupby(["group", "metric"])["value"].agg(["median", "mean", "std", "count"]).reset_index()
    table["std"] = table["std"].fillna(0.0)
    return table


def to_markdown(table: pd.DataFrame) -> str:
    lines = ["| group | metric | median | mean ± std | splits |", "|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        lines.append(f"| {row.group} | {row.metric} | {row.median:.4f} | {row.mean:.4f} ± {row.std:.4f} | {row.count} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.md/.csv (default: sweep_dir)")
    args = parser.parse_args(argv)
    runs, unfinished = collect(args.sweep_dir)
    for job in unfinished:
        print(f"unfinished (no metrics.json): {job}", file=sys.stderr)
    if runs.empty:
        print(f"error: no finished job (with metrics.json) under {args.sweep_dir}", file=sys.stderr)
        return 1
    table = summarise(runs)
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(table)
    (out / "report.md").write_text(markdown + "\n")
    table.to_csv(out / "report.csv", index=False)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
