"""Aggregate a Hydra multirun into the table IQA papers report.

    python -m iqa.report multirun/train/<date> [--out DIR]

Every job folder below the multirun folder holds Hydra's ``.hydra/overrides.yaml`` and,
once finished, ``metrics.json``. Jobs are grouped by their overrides minus the ones that
only change the split (``protocol.split_index``, ``seed``); for every ``test/`` metric
the table gives the median over splits (the usual headline number), mean ± std (sample
std) and the number of splits with a value. Jobs without ``metrics.json`` are listed as
unfinished; jobs whose ``run_info.json`` says ``failed`` (diverged, crashed) or whose test
metrics are null/non-finite are listed as FAILED with their error and never enter the
table. The git commit of the jobs (``run_info.json``) is given under the table, or per
group when the jobs ran different code. Writes ``report.md`` and ``report.csv`` into
``--out`` (default: the multirun folder) and prints the Markdown table; the exit code is
1 when a job failed or no job finished.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from iqa.provenance import read_run_info

SPLIT_KEYS = ("protocol.split_index", "seed")
METRIC_PREFIX = "test/"


class NoFinishedJobError(RuntimeError):
    """The multirun folder holds no job with test metrics in ``metrics.json``."""


@dataclass
class Jobs:
    """What :func:`collect` found: metric rows of the finished jobs, unfinished job folders,
    and failed ones with their reason (folders relative to the multirun folder)."""

    runs: pd.DataFrame
    unfinished: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _natural_key(path: Path) -> list:
    """Job folders in numeric order: 2 before 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def group_name(overrides: list[str]) -> str:
    """The overrides that define an experiment, i.e. all but the split-varying ones."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in SPLIT_KEYS]
    return " ".join(kept) or "(defaults)"


def code_version(info: dict | None) -> str | None:
    """The git commit (10 characters, ``-dirty`` with uncommitted changes) of a ``run_info.json`` record."""
    git = (info or {}).get("git") or {}
    if not git.get("commit"):
        return None
    return git["commit"][:10] + ("-dirty" if git.get("dirty") else "")


def _failure(info: dict | None, metrics: dict | None) -> str | None:
    """Why a job counts as failed, or None."""
    if info and info.get("status") == "failed":
        error = info.get("error") or {}
        reason = f"{error.get('type', 'error')}: {error.get('message', '')}"
        reason = " ".join(reason.split())  # one line
        return reason if len(reason) <= 300 else reason[:299] + "…"
    bad = [m for m, v in (metrics or {}).items()
           if m.startswith(METRIC_PREFIX) and (v is None or (isinstance(v, float) and not math.isfinite(v)))]
    return f"non-finite test metrics: {', '.join(bad)}" if bad else None


def collect(multirun_dir: Path) -> Jobs:
    """One row per (finished job, metric) with its group and code version; unfinished jobs
    (no readable ``metrics.json``) and failed ones apart."""
    jobs = Jobs(pd.DataFrame())
    rows = []
    folders = sorted((f.parent.parent for f in multirun_dir.rglob(".hydra/overrides.yaml")), key=_natural_key)
    for job in folders:
        info = read_run_info(job)
        try:
            metrics = json.loads((job / "metrics.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # still running, failed, or killed while writing
            metrics = None
        reason = _failure(info, metrics)
        if reason:
            jobs.failed.append((job.relative_to(multirun_dir), reason))
            continue
        if metrics is None:
            jobs.unfinished.append(job.relative_to(multirun_dir))
            continue
        group = group_name(yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or [])
        for metric, value in metrics.items():
            if metric.startswith(METRIC_PREFIX) and isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"group": group, "metric": metric, "value": float(value), "commit": code_version(info)})
    jobs.runs = pd.DataFrame(rows, columns=["group", "metric", "value", "commit"])
    return jobs


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Median, mean, std (NaN for a single split) and count per group and metric, groups
    and metrics in the order they first appear; with a ``commit`` column (the group's
    distinct code versions) when any job recorded one."""
    table = runs.groupby(["group", "metric"], sort=False)["value"].agg(["median", "mean", "std", "count"])
    table = table.reset_index()
    if "commit" in runs and runs["commit"].notna().any():
        commits = runs.groupby("group", sort=False)["commit"].agg(
            lambda c: " ".join(dict.fromkeys(v if isinstance(v, str) else "unknown" for v in c)))
        table["commit"] = table["group"].map(commits)
    return table


def _number(metric: str, value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.0f}" if metric.endswith("n_images") else f"{value:.4f}"


def to_markdown(table: pd.DataFrame, unfinished: list[Path], failed: list[tuple[Path, str]] | None = None) -> str:
    """The table; the code version under it (or as a column when jobs differ); failed and unfinished jobs."""
    commits = list(dict.fromkeys(" ".join(table["commit"]).split())) if "commit" in table else []
    per_group = len(commits) > 1
    lines = ["| group | metric | median | mean ± std | splits |" + (" commit |" if per_group else ""),
             "|---|---|---|---|---|" + ("---|" if per_group else "")]
    for row in table.itertuples(index=False):
        spread = f"{_number(row.metric, row.mean)} ± {_number(row.metric, row.std)}"
        line = f"| {row.group} | {row.metric} | {_number(row.metric, row.median)} | {spread} | {row.count} |"
        lines.append(line + (f" {row.commit} |" if per_group else ""))
    if len(commits) == 1:
        lines += ["", f"Code: git commit {commits[0]} (every job)"]
    elif per_group:
        lines += ["", f"Code: the jobs ran {len(commits)} versions (commit column)"]
    if any(c.endswith("-dirty") for c in commits):
        lines.append("(-dirty: uncommitted changes, which may differ between jobs)")
    if failed:
        lines += ["", f"FAILED jobs ({len(failed)}, not in the table):"]
        lines += [f"- {folder}: {reason}" for folder, reason in failed]
    if unfinished:
        lines += ["", f"Unfinished jobs (no readable metrics.json): {', '.join(map(str, unfinished))}"]
    return "\n".join(lines)


def report(multirun_dir: Path, out_dir: Path | None = None) -> tuple[str, list[tuple[Path, str]]]:
    """Write ``report.md`` and ``report.csv``; return the Markdown and the failed jobs."""
    if not multirun_dir.is_dir():
        raise FileNotFoundError(f"{multirun_dir} is not a folder")
    jobs = collect(multirun_dir)
    if jobs.runs.empty:
        failed = "".join(f"\n  FAILED {folder}: {reason}" for folder, reason in jobs.failed)
        raise NoFinishedJobError(
            f"no finished job under {multirun_dir}: no job folder (with .hydra/overrides.yaml) has a metrics.json "
            f"with test/ metrics ({len(jobs.unfinished)} unfinished, {len(jobs.failed)} failed){failed}"
        )
    table = summarise(jobs.runs)
    markdown = to_markdown(table, jobs.unfinished, jobs.failed)
    out_dir = out_dir or multirun_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(markdown + "\n")
    table.to_csv(out_dir / "report.csv", index=False)
    return markdown, jobs.failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("multirun_dir", type=Path, help="a Hydra multirun folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.md/.csv (default: multirun_dir)")
    args = parser.parse_args(argv)
    try:
        markdown, failed = report(args.multirun_dir, args.out)
    except (FileNotFoundError, NoFinishedJobError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(markdown)
    if failed:
        print(f"error: {len(failed)} job(s) failed; the table holds the others", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
