"""QMamba-T / LQMamba-T speed of two source trees of this project (e.g. an older commit checked
out with ``git worktree``), measured in turns on the same machine.

    git worktree add ../iqa-e68da96 e68da96
    python benchmarks/bench_qmamba_commits.py ../iqa-e68da96 . [--rounds 3] [--batch 8] [--threads 2]

Each round runs one fresh Python process per tree and model (``PYTHONPATH`` set to the tree),
alternating, so that a load that comes and goes on a shared machine reaches both trees alike.
A process builds the model with seed 0 (random weights, eval mode, fp32, batch of 224² images),
warms up with two batches and times three forward batches (``no_grad``) and three
forward+backward batches (gradients of all weights from the sum of the scores); the table gives
the fastest batch over all rounds. Both trees run with glibc keeping freed memory
(``MALLOC_MMAP_MAX_=0``, ``MALLOC_TRIM_THRESHOLD_``), whether or not the older one sets it itself.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TIMING = """
import json, sys, time
import torch
import iqa
from iqa.registry import create_model
try:
    import numba
    numba.set_num_threads({threads})
except ImportError:
    pass
torch.set_num_threads({threads})
torch.manual_seed(0)
model = create_model("qmamba", size="tiny", scan="{scan}").eval()
images = torch.randn({batch}, 3, 224, 224)

def forward():
    with torch.no_grad():
        model(images)

def forward_backward():
    model.zero_grad(set_to_none=True)
    model(images).sum().backward()

result = {{}}
for name, step in (("forward", forward), ("fwd+bwd", forward_backward)):
    times = []
    for turn in range(5):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result[name] = min(times[2:])
result["package"] = iqa.__file__
print(json.dumps(result))
"""

MODELS = {"QMamba-T": "cross", "LQMamba-T": "local"}


def time_tree(tree: Path, scan: str, batch: int, threads: int) -> dict[str, float]:
    """Seconds per batch (fastest of three) of one tree, in a fresh process."""
    environment = {**os.environ, "PYTHONPATH": str(tree.resolve()), "MALLOC_MMAP_MAX_": "0",
                   "MALLOC_TRIM_THRESHOLD_": str(1 << 30), "OMP_NUM_THREADS": str(threads)}
    completed = subprocess.run([sys.executable, "-c", TIMING.format(threads=threads, scan=scan, batch=batch)],
                               env=environment, capture_output=True, text=True, cwd=tree)
    if completed.returncode:
        raise SystemExit(f"timing {tree} failed:\n{completed.stderr[-2000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    if not Path(result.pop("package")).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the process for {tree} imported iqa from elsewhere; is another copy installed non-editably?")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path, help="source tree measured first in each round (the baseline)")
    parser.add_argument("new", type=Path, help="source tree compared with it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for tree in (args.old, args.new):
        if not (tree / "iqa" / "registry.py").is_file():
            raise SystemExit(f"{tree} is not a source tree of this project (no iqa/registry.py); "
                             "check one out with `git worktree add <folder> <commit>`")
    fastest: dict[tuple[str, Path, str], float] = {}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for model, scan in MODELS.items():
            for tree in (args.old, args.new):
                for name, seconds in time_tree(tree, scan, args.batch, args.threads).items():
                    key = (model, tree, name)
                    fastest[key] = min(fastest.get(key, float("inf")), seconds)
    print(f"Batch {args.batch}, 224², CPU, {args.threads} threads, fastest of 3 batches × {args.rounds} rounds; "
          f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}\n")
    print(f"| model | pass | {args.old} images / s | {args.new} images / s | × |\n|---|---|---|---|---|")
    for model in MODELS:
        for name in ("forward", "fwd+bwd"):
            old, new = (args.batch / fastest[model, tree, name] for tree in (args.old, args.new))
            print(f"| {model} | {name} | {old:.2f} | {new:.2f} | {new / old:.2f} |")


if __name__ == "__main__":
    main()
