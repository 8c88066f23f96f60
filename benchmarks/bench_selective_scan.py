"""Selective-scan speed at VMamba-T stage-1 sizes (batch 1, 4 directions × 192 channels,
L = 56·56, d_state 1, grouped B/C, softplus, D and delta_bias), forward and forward+backward.

    python benchmarks/bench_selective_scan.py [--device cpu|cuda] [--repeats 5] [--threads 2]

Compares the torch backend's algorithms (numba's compiled loop on CPU, the parallel scan) with
a plain sequential reference (a Python loop over L on precomputed exp(ΔA) and ΔBu) and, on
CUDA, mamba_ssm's kernel when it imports. On CPU also SS2D's fused scan
(:mod:`iqa.ops.scan_cross_numba`) at the same sizes, laid out as SS2D gives them: a 56×56 map
of dim / 4 channels read along VMamba's four cross-scan paths, directions summed at each pixel,
and Δ = softplus(W r + bias) from a rank-6 r inside the kernel (more work than the other rows,
which get Δ precomputed); its output is compared with the reference run on the same numbers.
Prints a Markdown table: the first call (numba's JIT compilation, from an empty cache), then
medians of the timed calls, the candidates taking turns: forward under ``torch.no_grad()`` and
forward+backward (gradients of all inputs), with the speed-up over
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


def fused_cross_scan(x: dict, groups: int, rank: int) -> tuple[Callable[[], torch.Tensor], torch.Tensor]:
    """SS2D's fused CPU scan on a square map of dim / groups channels (VMamba's cross-scan paths,
    directions summed), Δ from a rank-``rank`` projection inside the kernel; A, D, delta_bias
    from ``x``. Returns the scan and the sequential reference's output in the same layout."""
    from iqa.models.backbones.scans import CrossScan
    from iqa.ops.scan_cross_numba import directional_scan_numba

    batch, dim, length = x["u"].shape
    channels, n_state = dim // groups, x["A"].shape[1]
    paths = CrossScan().paths(int(length**0.5), int(length**0.5))
    g = torch.Generator().manual_seed(1)
    pixel = {"u": torch.randn(batch, length, channels, generator=g),  # pixel-major, as SS2D gives them
             "ranked": torch.randn(batch, length, groups, rank, generator=g),
             "dt_weight": torch.randn(groups, channels, rank, generator=g) * rank**-0.5 - 1,
             "B": torch.randn(batch, length, groups, n_state, generator=g),
             "C": torch.randn(batch, length, groups, n_state, generator=g)}
    index = paths.long()
    with torch.no_grad():  # the same numbers as K sequences for the reference
        u, B, C = pixel["u"].transpose(1, 2), pixel["B"].permute(0, 2, 3, 1), pixel["C"].permute(0, 2, 3, 1)
        delta = torch.matmul(pixel["dt_weight"], pixel["ranked"].permute(0, 2, 3, 1))
        out = sequential_reference(
            torch.cat([u[..., index[k]] for k in range(groups)], 1),
            torch.cat([delta[:, k][..., index[k]] for k in range(groups)], 1), x["A"].detach(),
            torch.stack([B[:, k][..., index[k]] for k in range(groups)], 1),
            torch.stack([C[:, k][..., index[k]] for k in range(groups)], 1),
            x["D"].detach(), x["delta_bias"].detach())
        expected = sum(out[:, k * channels:(k + 1) * channels][..., index[k].argsort()]
                       for k in range(groups)).transpose(1, 2)
    leaves = {name: t.requires_grad_() for name, t in pixel.items()}

    def scan() -> torch.Tensor:
        return directional_scan_numba(leaves["u"], leaves["ranked"], leaves["dt_weight"], x["delta_bias"], x["A"],
                                      leaves["B"], leaves["C"], x["D"], paths, merge=True)

    return scan, expected


def milliseconds(function: Callable[[], None], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def measure(candidates: dict[str, Callable[[], torch.Tensor]], device: str,
            repeats: int) -> dict[str, tuple[float, float, float, torch.Tensor]]:
    """Per candidate: first call (forward+backward), median forward, median forward+backward, and
    the output. The candidates take turns in every repeat (the machine may be shared)."""
    def forward(scan: Callable[[], torch.Tensor]) -> None:
        with torch.no_grad():
            scan()

    def forward_backward(scan: Callable[[], torch.Tensor]) -> None:
        scan().sum().backward()

    first = {name: milliseconds(lambda: forward_backward(scan), device) for name, scan in candidates.items()}
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in candidates}
    for _ in range(repeats):
        for name, scan in candidates.items():
            times[name][0].append(milliseconds(lambda: forward(scan), device))
            times[name][1].append(milliseconds(lambda: forward_backward(scan), device))
    rows = {}
    for name, scan in candidates.items():
        with torch.no_grad():
            rows[name] = (first[name], statistics.median(times[name][0]), statistics.median(times[name][1]), scan())
    return rows


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
    parser.add_argument("--rank", type=int, default=6, help="Δ's rank in the fused SS2D scan (VMamba-T stage 1)")
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
        if args.device == "cpu" and recurrence_numba is not None and args.length == int(args.length**0.5) ** 2:
            fused, fused_expected = fused_cross_scan(x, args.groups, args.rank)
            candidates["SS2D fused scan, numba (Δ projection and softplus inside)"] = fused
        candidates["torch backend, parallel scan"] = lambda: selective_scan_torch(**x, delta_softplus=True,
                                                                                  algorithm="scan")
        kernel = _mamba_kernel()
        if kernel is not None and args.device == "cuda":
            candidates["mamba_ssm kernel"] = lambda: kernel(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None,
                                                            x["delta_bias"], True)
        load_before = os.getloadavg()[0]
        rows = measure(candidates, args.device, args.repeats)
    _, ref_forward, ref_both, ref_out = rows["sequential reference"]
    threads = args.threads or torch.get_num_threads()
    print(f"{args.device}, {threads} threads, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"batch {args.batch}, "
          f"dim {args.dim}, L {args.length}, d_state {args.d_state}, {args.groups} groups; median of {args.repeats}\n")
    print("| algorithm | first call ms | forward ms | ×ref | fwd+bwd ms | ×ref | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for name, (first, forward, both, out) in rows.items():
        expected = fused_expected if name.startswith("SS2D fused") else ref_out
        diff = (out.float() - expected).abs().max().item()
        print(f"| {name} | {first:.0f} | {forward:.1f} | {ref_forward / forward:.1f} | {both:.1f} | "
              f"{ref_both / both:.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
