"""Selective-scan speed at VMamba-T stage-1 sizes (batch 1, 4 directions × 192 channels,
L = 56·56, d_state 1, grouped B/C, softplus, D and delta_bias), forward and forward+backward.

    python benchmarks/bench_selective_scan.py [--device cpu|cuda] [--repeats 5] [--threads 2]

Compares the torch backend's algorithms (numba's compiled loop on CPU, the parallel scan) with
a plain sequential reference (a Python loop over L on precomputed exp(ΔA) and ΔBu) and, on
CUDA, mamba_ssm's kernel when it imports. Prints a Markdown table: the first call (numba's
JIT compilation, from an empty cache), then medians of the timed calls: forward under
``torch.no_grad()`` and forward+backward (gradients of all inputs), with the speed-up over
the reference and the largest output difference from it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def sequential_reference(u, delta, A, B, C, D, delta_bias):
    """The baseline of the issue: precompute exp(ΔA) and ΔBu, then step through L in Python."""
    delta = F.softplus(delta + delta_bias[:, None])
    B = B.repeat_interleave(u.shape[1] // B.shape[1], dim=1)
    C = C.repeat_interleave(u.shape[1] // C.shape[1], dim=1)
    decay = torch.exp(delta.unsqueeze(-1) * A[:, None])  # (batch, dim, L, N)
    drive = (delta * u).unsqueeze(-1) * B.transpose(-1, -2)
    state = torch.zeros_like(drive[:, :, 0])
    ys = []
    for t in range(u.shape[2]):
        state = decay[:, :, t] * state + drive[:, :, t]
        ys.append((state * C[:, :, :, t]).sum(-1))
    return torch.stack(ys, -1) + u * D[:, None]


def make_inputs(device: str, batch: int, dim: int, length: int, d_state: int, groups: int) -> dict:
    g = torch.Generator().manual_seed(0)

    def leaf(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device).requires_grad_()

    return {"u": leaf(torch.randn(batch, dim, length, generator=g)),
            "delta": leaf(torch.randn(batch, dim, length, generator=g) - 2),
            "A": leaf(-torch.arange(1, d_state + 1.0).repeat(dim, 1)),  # VMamba's A = -exp(A_log) at init
            "B": leaf(torch.randn(batch, groups, d_state, length, generator=g)),
            "C": leaf(torch.randn(batch, groups, d_state, length, generator=g)),
            "D": leaf(torch.ones(dim)), "delta_bias": leaf(torch.rand(dim, generator=g) - 4)}


def milliseconds(function: Callable[[], None], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def measure(scan: Callable[[], torch.Tensor], device: str, repeats: int) -> tuple[float, float, float, torch.Tensor]:
    """First call (forward+backward), median forward, median forward+backward, and the output."""
    def forward() -> None:
        with torch.no_grad():
            scan()

    def forward_backward() -> None:
        scan().sum().backward()

    first = milliseconds(forward_backward, device)
    forward_ms = statistics.median(milliseconds(forward, device) for _ in range(repeats))
    both_ms = statistics.median(milliseconds(forward_backward, device) for _ in range(repeats))
    with torch.no_grad():
        return first, forward_ms, both_ms, scan()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: all cores)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=4 * 192)
    parser.add_argument("--length", type=int, default=56 * 56)
    parser.add_argument("--d-state", type=int, default=1)
    parser.add_argument("--groups", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as jit_cache:
        os.environ["NUMBA_CACHE_DIR"] = jit_cache  # read when numba is imported, below
        from iqa.ops.selective_scan import _mamba_kernel, recurrence_numba, selective_scan_torch

        if args.threads:
            torch.set_num_threads(args.threads)
            if recurrence_numba is not None:
                import numba

                numba.set_num_threads(args.threads)
        x = make_inputs(args.device, args.batch, args.dim, args.length, args.d_state, args.groups)
        candidates = {"sequential reference": lambda: sequential_reference(**x)}
        if args.device == "cpu" and recurrence_numba is not None:
            candidates["torch backend, numba loop"] = lambda: selective_scan_torch(**x, delta_softplus=True,
                                                                                   algorithm="numba")
        candidates["torch backend, parallel scan"] = lambda: selective_scan_torch(**x, delta_softplus=True,
                                                                                  algorithm="scan")
        kernel = _mamba_kernel()
        if kernel is not None and args.device == "cuda":
            candidates["mamba_ssm kernel"] = lambda: kernel(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None,
                                                            x["delta_bias"], True)
        rows = {name: measure(scan, args.device, args.repeats) for name, scan in candidates.items()}
    _, ref_forward, ref_both, ref_out = rows["sequential reference"]
    threads = args.threads or torch.get_num_threads()
    print(f"{args.device}, {threads} threads, load average {os.getloadavg()[0]:.1f}; batch {args.batch}, "
          f"dim {args.dim}, L {args.length}, d_state {args.d_state}, {args.groups} groups; median of {args.repeats}\n")
    print("| algorithm | first call ms | forward ms | ×ref | fwd+bwd ms | ×ref | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for name, (first, forward, both, out) in rows.items():
        diff = (out.float() - ref_out).abs().max().item()
        print(f"| {name} | {first:.0f} | {forward:.1f} | {ref_forward / forward:.1f} | {both:.1f} | "
              f"{ref_both / both:.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
