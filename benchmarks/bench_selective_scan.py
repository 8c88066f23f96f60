"""Selective-scan speed at VMamba-T stage-1 sizes (4 directions × 192 channels, L = 56·56,
d_state 1, grouped B/C, softplus, D and delta_bias), forward and forward+backward.

    python benchmarks/bench_selective_scan.py [--device cpu|cuda] [--repeats 5]

Compares our torch backend (loop and chunked algorithms) with a plain sequential reference
(a Python loop over L on precomputed exp(ΔA) and ΔBu) and, on CUDA, mamba_ssm's kernel when it
imports. Prints a Markdown table of median milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from iqa.ops.selective_scan import _mamba_kernel, selective_scan_torch


def sequential_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """The baseline of the issue: precompute exp(ΔA) and ΔBu, then step through L in Python."""
    delta = F.softplus(delta + delta_bias[:, None])
    groups = B.shape[1]
    B = B.repeat_interleave(u.shape[1] // groups, dim=1)
    C = C.repeat_interleave(u.shape[1] // groups, dim=1)
    decay = torch.exp(delta.unsqueeze(-1) * A[:, None])  # (b, d, L, N)
    drive = (delta * u).unsqueeze(-1) * B.transpose(-1, -2)
    state = torch.zeros_like(drive[:, :, 0])
    ys = []
    for t in range(u.shape[2]):
        state = decay[:, :, t] * state + drive[:, :, t]
        ys.append((state * C[:, :, :, t]).sum(-1))
    return torch.stack(ys, -1) + u * D[:, None]


def inputs(device: str, batch: int = 1, dim: int = 768, length: int = 3136, n: int = 1, groups: int = 4):
    g = torch.Generator().manual_seed(0)
    make = lambda *s: torch.randn(*s, generator=g).to(device).requires_grad_()  # noqa: E731
    return dict(u=make(batch, dim, length), delta=make(batch, dim, length),
                A=(-torch.rand(dim, n, generator=g) - 0.5).to(device).requires_grad_(),
                B=make(batch, groups, n, length), C=make(batch, groups, n, length), D=make(dim), z=None,
                delta_bias=make(dim), delta_softplus=True)


def median_ms(function, device: str, repeats: int, backward: bool) -> float:
    times = []
    for index in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = function()
        if backward:
            out.sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if index:  # the first call warms up
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x = inputs(args.device)
    candidates = {
        "sequential reference": lambda: sequential_reference(**x),
        "torch backend, loop": lambda: selective_scan_torch(**x, algorithm="loop"),
        "torch backend, chunked": lambda: selective_scan_torch(**x, algorithm="chunked"),
    }
    kernel = _mamba_kernel()
    if kernel is not None and args.device == "cuda":
        candidates["mamba_ssm kernel"] = lambda: kernel(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None,
                                                        x["delta_bias"], True)
    rows = {name: (median_ms(f, args.device, args.repeats, False), median_ms(f, args.device, args.repeats, True))
            for name, f in candidates.items()}
    base_forward, base_backward = rows["sequential reference"]
    print(f"| {args.device}: 4×192 ch, L=3136, d_state 1 | forward ms | ×ref | fwd+bwd ms | ×ref |")
    print("|---|---|---|---|---|")
    for name, (forward, both) in rows.items():
        print(f"| {name} | {forward:.1f} | {base_forward / forward:.2f} | {both:.1f} | {base_backward / both:.2f} |")


if __name__ == "__main__":
    main()
