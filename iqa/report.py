"""Aggregate a Hydra multirun into the table IQA papers report.

    python -m iqa.report multirun/train/<date> [--out DIR] [--allow-incomplete]

One row per configuration, i.e. per combination of the overrides that differ between the
sweep's jobs (``.hydra/overrides.yaml``), aggregated over the split ones
(``protocol.split_index``, ``seed``); overrides every job shares are stated above the table.
Per test set, SRCC / PLCC / KRCC / RMSE of ``metrics.json`` as ``median (mean ± std, n)``
over splits (sample std) and the test-set size ``n_images``. Failed jobs (``run_info.json``
says ``failed``, or null/non-finite test metrics) and unfinished ones (no test metrics:
running or killed) are listed, never averaged; the jobs' git commit is given under the table.

Writes ``report.md``, ``report.csv`` and ``report.tex`` (booktabs) into ``--out`` (default:
the multirun folder), replacing only report files it wrote itself, and prints the Markdown.
Exit code 1 when a job failed, is unfinished (unless ``--allow-incomplete``) or none finished.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from iqa.atomic import atomic_write_text
from iqa.provenance import read_run_info

SPLIT_KEYS = ("protocol.split_index", "seed")
METRIC_PREFIX = "test/"
METRICS = {"srcc": "SRCC", "plcc": "PLCC", "krcc": "KRCC", "rmse": "RMSE"}
COUNT = "n_images"
MARKER = "written by python -m iqa.report; running it again replaces this file"
# first lines of the files this tool writes (and wrote before), which it may replace
OWN_FIRST_LINES = {".md": (f"<!-- {MARKER}", "| group | metric |"), ".csv": ("configuration,", "group,metric,"),
                   ".tex": (f"% {MARKER}",)}


class NoFinishedJobError(RuntimeError):
    """The multirun folder holds no job with test metrics in ``metrics.json``."""


@dataclass
class Sweep:
    """What :func:`collect` found (folders relative to the multirun folder)."""

    finished: list[tuple[dict[str, str], dict[str, float], str | None]] = field(default_factory=list)
    unfinished: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    varying: list[str] = field(default_factory=list)  # override keys that differ between jobs
    fixed: list[str] = field(default_factory=list)  # key=value overrides every job shares


def _natural_key(path: Path) -> list:
    """Job folders in numeric order: 2 before 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """``{key: value}`` of Hydra overrides (``+``/``++`` dropped; ``~key`` is ``(removed)``)."""
    parsed = {}
    for override in overrides:
        key, _, value = override.partition("=")
        parsed[key.lstrip("+~")] = "(removed)" if key.startswith("~") else value
    return parsed


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
        reason = " ".join(f"{error.get('type', 'error')}: {error.get('message', '')}".split())  # one line
        return reason if len(reason) <= 300 else reason[:299] + "…"
    bad = [m for m, v in (metrics or {}).items()
           if m.startswith(METRIC_PREFIX) and (v is None or (isinstance(v, float) and not math.isfinite(v)))]
    return f"non-finite test metrics: {', '.join(bad)}" if bad else None


def _job_status(info: dict | None) -> str:
    """``run_info.json``'s status of an unfinished job; for ``running`` on this host, whether
    its process still runs (a killed run stays ``running``)."""
    if info is None:
        return "no run_info.json"
    status, pid, host = info.get("status", "unknown"), info.get("pid"), info.get("hostname")
    if status != "running" or not isinstance(pid, int):
        return f"status {status}"
    if host != socket.gethostname():
        return f"status running (pid {pid} on {host}: running, or killed)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"status running, but its process {pid} is gone: killed"
    except OSError:  # another user's process
        pass
    return f"status running (pid {pid})"


def collect(multirun_dir: Path) -> Sweep:
    """Finished jobs (overrides, test metrics, code version), unfinished and failed ones, and
    which overrides vary between the jobs."""
    sweep = Sweep()
    every_job = []
    for job in sorted((f.parent.parent for f in multirun_dir.rglob(".hydra/overrides.yaml")), key=_natural_key):
        overrides = parse_overrides(yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or [])
        every_job.append(overrides)
        info, folder = read_run_info(job), job.relative_to(multirun_dir)
        try:
            metrics, state = json.loads((job / "metrics.json").read_text()), "has no test/ metrics"
        except FileNotFoundError:
            metrics, state = None, "missing"
        except json.JSONDecodeError:  # killed while writing
            metrics, state = None, "unreadable"
        reason = _failure(info, metrics)
        tests = {m: float(v) for m, v in (metrics or {}).items()
                 if m.startswith(METRIC_PREFIX) and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if reason:
            sweep.failed.append((folder, reason))
        elif not tests:
            sweep.unfinished.append((folder, f"{_job_status(info)}; metrics.json {state}"))
        else:
            sweep.finished.append((overrides, tests, code_version(info)))
    keys = [k for k in dict.fromkeys(k for job in every_job for k in job) if k not in SPLIT_KEYS]
    sweep.varying = [k for k in keys if len({job.get(k) for job in every_job}) > 1]
    sweep.fixed = [f"{k}={every_job[0][k]}" for k in keys if k not in sweep.varying]
    return sweep


def _split_metric(key: str) -> tuple[str, str]:
    """``test/koniq/srcc`` → ``("koniq", "srcc")``; ``test/srcc`` → ``("", "srcc")``."""
    test_set, _, metric = key[len(METRIC_PREFIX):].rpartition("/")
    return test_set, metric


def _count(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.0f}" if low == high else f"{low:.0f}–{high:.0f}"


def summarise(sweep: Sweep) -> pd.DataFrame:
    """One row per configuration: ``configuration`` (its overrides), one column per varying
    override, then per test set ``<metric key>`` for the image count and ``<metric key>/median``,
    ``/mean``, ``/std`` (NaN for one split), ``/n`` for each metric; ``commit`` (the distinct
    code versions) when any job recorded one. Rows and test sets in the order they first appear."""
    values: dict[tuple, dict[str, list[float]]] = {}
    commits: dict[tuple, list[str | None]] = {}
    for overrides, metrics, commit in sweep.finished:
        config = tuple(overrides.get(k, "default") for k in sweep.varying)
        for key, value in metrics.items():
            values.setdefault(config, {}).setdefault(key, []).append(value)
        commits.setdefault(config, []).append(commit)
    keys = list(dict.fromkeys(k for metrics in values.values() for k in metrics))
    sets, order = list(dict.fromkeys(_split_metric(k)[0] for k in keys)), [COUNT, *METRICS]
    rank = {m: i for i, m in enumerate(order)}
    keys.sort(key=lambda k: (sets.index(_split_metric(k)[0]), rank.get(_split_metric(k)[1], len(order)), k))
    rows = []
    for config, metrics in values.items():
        named = [f"{k}={v}" for k, v in zip(sweep.varying, config)]
        row = {"configuration": " ".join(named or sweep.fixed) or "(defaults)", **dict(zip(sweep.varying, config))}
        for key in keys:
            series = pd.Series(metrics.get(key, []), dtype=float)
            if _split_metric(key)[1] == COUNT:
                row[key] = _count(list(series)) if len(series) else ""
            else:
                row.update({f"{key}/median": series.median(), f"{key}/mean": series.mean(),
                            f"{key}/std": series.std(), f"{key}/n": len(series)})
        if any(c for every in commits.values() for c in every):
            row["commit"] = " ".join(dict.fromkeys(c or "unknown" for c in commits[config]))
        rows.append(row)
    return pd.DataFrame(rows)


def _number(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.4f}"


def _cell(row: pd.Series, key: str, kind: str) -> str:
    if kind == "metric":
        median, mean, std, n = (row[f"{key}/{stat}"] for stat in ("median", "mean", "std", "n"))
        return f"{_number(median)} ({_number(mean)} ± {_number(std)}, {n:.0f})" if n else "–"
    return str(row[key]) if isinstance(row[key], str) and row[key] else "–"


def _grid(table: pd.DataFrame, sweep: Sweep) -> tuple[list[tuple[str, str, bool]], list[list[str]]]:
    """Headers as (test set, name, numeric) and the cells of the displayed table: the varying
    overrides (or the configuration), per test set the image count and those of SRCC, PLCC,
    KRCC, RMSE that have a value (the CSV has every metric), and the commits when the jobs
    ran different code."""
    columns = [(k, "label", "", k) for k in sweep.varying] or [("configuration", "label", "", "configuration")]
    for key in table.columns:
        if key.endswith(f"/{COUNT}") or key == METRIC_PREFIX + COUNT:
            columns.append((key, "count", _split_metric(key)[0], COUNT))
        elif key.endswith("/n") and _split_metric(key[:-2])[1] in METRICS and table[key].any():
            test_set, metric = _split_metric(key[:-2])
            columns.append((key[:-2], "metric", test_set, METRICS[metric]))
    if "commit" in table and len(set(" ".join(table["commit"]).split())) > 1:
        columns.append(("commit", "label", "", "commit"))
    cells = [[_cell(row, key, kind) for key, kind, _, _ in columns] for _, row in table.iterrows()]
    return [(test_set, header, kind != "label") for _, kind, test_set, header in columns], cells


def _notes(table: pd.DataFrame, sweep: Sweep) -> list[str]:
    """The lines under the table: code versions, failed and unfinished jobs."""
    commits = list(dict.fromkeys(" ".join(table["commit"]).split())) if "commit" in table else []
    lines = []
    if commits:
        lines.append(f"Code: git commit {commits[0]} (every job)" if len(commits) == 1
                     else f"Code: the jobs ran {len(commits)} versions (commit column)")
    if any(c.endswith("-dirty") for c in commits):
        lines.append("(-dirty: uncommitted changes, which may differ between jobs)")
    for title, jobs in (("FAILED jobs", sweep.failed), ("Unfinished jobs", sweep.unfinished)):
        if jobs:
            lines += [*([""] if lines else []), f"{title} ({len(jobs)}, not in the table):",
                      *(f"- {folder}: {why}" for folder, why in jobs)]
    return lines


def _caption(sweep: Sweep) -> list[str]:
    done = f"{len(sweep.finished)} finished, {len(sweep.failed)} failed, {len(sweep.unfinished)} unfinished"
    fixed = f"Every job: {' '.join(sweep.fixed)}." if sweep.fixed and sweep.varying else ""
    return [f"Jobs: {done}.", *([fixed] if fixed else []),
            f"Cells: median (mean ± std, n) over splits ({', '.join(SPLIT_KEYS)}); n_images: test images."]


def to_markdown(table: pd.DataFrame, sweep: Sweep) -> str:
    """The table with its caption above and notes below."""
    headers, cells = _grid(table, sweep)
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    names = [f"{s} {h}" if s else h for s, h, _ in headers]
    align = ["---:" if numeric else "---" for _, _, numeric in headers]
    lines = [*_caption(sweep), "", "| " + " | ".join(names) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in cells]
    return "\n".join(lines + [""] + _notes(table, sweep)).rstrip()


def _latex(text: str) -> str:
    text = re.sub(r"([&%$#_{}])", r"\\\1", text.replace("\\", "\0"))
    text = text.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")
    return text.replace("\0", r"\textbackslash{}").replace("±", r"$\pm$").replace("–", "--")


def to_latex(table: pd.DataFrame, sweep: Sweep) -> str:
    """A booktabs table (``\\usepackage{booktabs}``); test sets as column groups when there are several."""
    headers, cells = _grid(table, sweep)
    lines = [f"% {MARKER}", r"\begin{table}[t]", r"\centering",
             r"\caption{" + _latex(" ".join(_caption(sweep)[1:])) + "}", r"\label{tab:iqa-report}",
             r"\begin{tabular}{" + "".join("r" if numeric else "l" for _, _, numeric in headers) + "}", r"\toprule"]
    sets = [s for s, _, _ in headers]
    if any(sets):
        groups, rules, column = [], [], 1
        for name, run in itertools.groupby(sets):
            span = len(list(run))
            if name:
                groups.append(rf"\multicolumn{{{span}}}{{c}}{{{_latex(name)}}}")
                rules.append(rf"\cmidrule(lr){{{column}-{column + span - 1}}}")
            else:
                groups += [""] * span
            column += span
        lines += [" & ".join(groups) + r" \\", " ".join(rules)]
    lines += [" & ".join(_latex(h) for _, h, _ in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex(c) for c in row) + r" \\" for row in cells]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}", r"\end{table}"])


def _check_ours(paths: list[Path]) -> None:
    """Refuse before writing anything when a target exists that this tool did not write."""
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                first = handle.readline()
        except FileNotFoundError:
            continue
        if not first.startswith(OWN_FIRST_LINES[path.suffix]):
            raise FileExistsError(f"{path} exists and was not written by python -m iqa.report; refusing to "
                                  "replace it: move it away or write the report elsewhere with --out DIR")


def report(multirun_dir: Path, out_dir: Path | None = None) -> tuple[str, Sweep]:
    """Write ``report.md``, ``report.csv`` and ``report.tex``; return the Markdown and the sweep."""
    if not multirun_dir.is_dir():
        raise FileNotFoundError(f"{multirun_dir} is not a folder")
    sweep = collect(multirun_dir)
    if not sweep.finished:
        jobs = [f"\n  FAILED {f}: {why}" for f, why in sweep.failed]
        jobs += [f"\n  unfinished {f}: {why}" for f, why in sweep.unfinished]
        raise NoFinishedJobError(
            f"no finished job under {multirun_dir}: no job folder (with .hydra/overrides.yaml) has a metrics.json "
            f"with test/ metrics ({len(sweep.unfinished)} unfinished, {len(sweep.failed)} failed){''.join(jobs)}"
        )
    table = summarise(sweep)
    markdown = to_markdown(table, sweep)
    out_dir = out_dir or multirun_dir
    paths = [out_dir / f"report{suffix}" for suffix in (".md", ".csv", ".tex")]
    _check_ours(paths)
    atomic_write_text(paths[0], f"<!-- {MARKER} -->\n{markdown}\n")
    atomic_write_text(paths[1], table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(paths[2], to_latex(table, sweep) + "\n")
    return markdown, sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("multirun_dir", type=Path, help="a Hydra multirun folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write report.md/.csv/.tex "
                        "(default: multirun_dir)")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="exit with 0 although some jobs are unfinished (running or killed)")
    args = parser.parse_args(argv)
    try:
        markdown, sweep = report(args.multirun_dir, args.out)
    except (FileNotFoundError, FileExistsError, NoFinishedJobError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(markdown)
    status = 0
    if sweep.failed:
        print(f"error: {len(sweep.failed)} job(s) failed; the table holds the others", file=sys.stderr)
        status = 1
    if sweep.unfinished and not args.allow_incomplete:
        print(f"error: {len(sweep.unfinished)} job(s) unfinished (running or killed); the table holds the "
              "finished ones; pass --allow-incomplete to accept that", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
