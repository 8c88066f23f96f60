"""QMamba-T and LQMamba-T against timm's ViT-S/16 and Swin-T: speed on this machine, parameters
and GFLOPs at 224², plus the six sizes of the QMamba paper's Table 1.

    python benchmarks/bench_qmamba.py [--batch 8] [--repeats 3] [--threads 2] [--device cpu]
                                      [--scan-backend torch] [--no-backward] [--no-before] [--profile]

Speed: random weights, eval mode, fp32, random 224² images; forward under ``torch.no_grad``
and forward+backward (gradients of all weights from the sum of the scores). After one warm-up
batch the fastest of ``--repeats`` batches is reported, the models taking turns (the machine
may be shared). "before" rows are the same models (same weights) with SS2D's fused CPU scan
switched off (``SS2D.fused_scan = False``: unfold into K sequences → ``selective_scan`` →
fold), i.e. the code path before the fused scan, measured in the same interleaved run.
``--profile`` adds torch.profiler's self-CPU share per op for QMamba-T (forward, fwd+bwd).
GFLOPs are multiply-accumulates, as the papers count them: QMamba's by ``VSSM.flops``
(fvcore's conventions plus the selective scan), the timm models' by ``torch.utils.flop_counter``
(matmuls and convolutions; their LayerNorms add < 0.3 %). Nothing is downloaded. As every entry point,
the benchmark keeps freed memory in glibc's heap (:func:`iqa.runtime.keep_freed_memory`; set
``IQA_KEEP_FREED_MEMORY=0`` to measure without).
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import timm
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from iqa.registry import create_model
from iqa.runtime import keep_freed_memory

TABLE_1 = {  # QMamba paper, Table 1: parameters (M), GFLOPs
    ("tiny", "cross"): (27.99, 4.47), ("small", "cross"): (49.37, 8.71), ("base", "cross"): (87.53, 15.35),
    ("tiny", "local"): (29.87, 4.44), ("small", "local"): (52.91, 8.66), ("base", "local"): (93.79, 15.30),
}
TIMM_MODELS = {"ViT-S/16": "vit_small_patch16_224", "Swin-T": "swin_tiny_patch4_window7_224"}


def name_of(size: str, scan: str) -> str:
    return f"{'L' if scan == 'local' else ''}QMamba-{size[0].upper()}"


def timm_gmacs(model: torch.nn.Module) -> float:
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        model.eval()(torch.randn(1, 3, 224, 224))
    return counter.get_total_flops() / 2e9


def unfused(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` (same weights) whose SS2D blocks take the unfolding path."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if hasattr(module, "fused_scan"):
            module.fused_scan = False
    return model


def images_per_second(models: dict[str, torch.nn.Module], batch: int, repeats: int, device: str,
                      backward: bool) -> dict[tuple[str, str], float]:
    """Fastest of ``repeats`` batches per model and pass (``forward``, ``fwd+bwd``); the models
    take turns, so that a load that comes and goes on a shared machine reaches all alike."""
    images = torch.randn(batch, 3, 224, 224, device=device)
    passes = ("forward", "fwd+bwd") if backward else ("forward",)
    fastest = {(label, name): float("inf") for label in models for name in passes}

    def run(model: torch.nn.Module, name: str) -> None:
        if name == "forward":
            with torch.no_grad():
                model(images)
        else:
            model.zero_grad(set_to_none=True)
            model(images).sum().backward()

    for turn in range(repeats + 1):  # turn 0 warms up
        for label, model in models.items():
            for name in passes:
                start = time.perf_counter()
                run(model, name)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if turn:
                    fastest[label, name] = min(fastest[label, name], time.perf_counter() - start)
    return {key: batch / seconds for key, seconds in fastest.items()}


def profile_table(model: torch.nn.Module, batch: int, backward: bool, rows: int = 12) -> str:
    """Self-CPU time per op (torch.profiler) of one forward or forward+backward batch, Markdown."""
    from torch.profiler import ProfilerActivity, profile

    images = torch.randn(batch, 3, 224, 224)
    with torch.set_grad_enabled(backward), profile(activities=[ProfilerActivity.CPU]) as prof:
        scores = model(images)
        if backward:
            scores.sum().backward()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    lines = ["| op | self CPU s | share | calls |", "|---|---|---|---|"]
    lines += [f"| {e.key} | {e.self_cpu_time_total / 1e6:.2f} | {e.self_cpu_time_total / total:.1%} | {e.count} |"
              for e in events[:rows]]
    return "\n".join(lines + [f"| total | {total / 1e6:.2f} | 100% | |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scan-backend", default="torch", choices=["auto", "cuda", "torch"])
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    parser.add_argument("--no-backward", dest="backward", action="store_false", help="forward only")
    parser.add_argument("--no-before", dest="before", action="store_false", help="skip the unfused SS2D rows")
    parser.add_argument("--profile", action="store_true", help="self-CPU share per op of QMamba-T")
    args = parser.parse_args()
    kept = keep_freed_memory()  # as every entry point: LQMamba's (B, K, D, H·W) stage-1 outputs are 77 MB
    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(args.threads)
    except ImportError:
        pass

    print("| model | params (M) | paper | GFLOPs | paper |\n|---|---|---|---|---|")
    for (size, scan), (paper_params, paper_gflops) in TABLE_1.items():
        with torch.device("meta"):  # shapes only
            model = create_model("qmamba", size=size, scan=scan)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name_of(size, scan)} | {params:.2f} | {paper_params:.2f} | {model.backbone.flops(224) / 1e9:.2f} "
              f"| {paper_gflops:.2f} |")

    torch.manual_seed(0)
    models = {}
    for scan in ("cross", "local"):
        model = create_model("qmamba", size="tiny", scan=scan, scan_backend=args.scan_backend)
        if args.before:
            models[f"{name_of('tiny', scan)} before"] = unfused(model)
        models[name_of("tiny", scan)] = model
    models.update({label: timm.create_model(arch, num_classes=1) for label, arch in TIMM_MODELS.items()})
    gmacs = {label: (m.backbone.flops(224) if hasattr(m, "backbone") else timm_gmacs(m) * 1e9) / 1e9
             for label, m in models.items()}
    load_before = os.getloadavg()
    speed = images_per_second({label: m.to(args.device).eval() for label, m in models.items()}, args.batch,
                              args.repeats, args.device, args.backward)
    print(f"\nBatch {args.batch}, 224², {args.device}, {torch.get_num_threads()} threads, scan backend "
          f"{args.scan_backend}, torch {torch.__version__}; load average (1, 5, 15 min) before "
          f"{load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}, after {os.getloadavg()[0]:.1f}; glibc keeps "
          f"freed memory: {kept}\n")
    print("| model | pass | params (M) | GFLOPs | images / s | × ViT-S/16 | × Swin-T | × before |\n"
          "|---|---|---|---|---|---|---|---|")
    for (label, name), rate in speed.items():
        params = sum(p.numel() for p in models[label].parameters()) / 1e6
        before = speed.get((f"{label} before", name))
        print(f"| {label} | {name} | {params:.2f} | {gmacs[label]:.2f} | {rate:.2f} | "
              f"{rate / speed['ViT-S/16', name]:.3f} | {rate / speed['Swin-T', name]:.3f} | "
              f"{f'{rate / before:.2f}' if before else ''} |")
    if args.profile:
        for backward in (False, True):
            print(f"\nQMamba-T {'fwd+bwd' if backward else 'forward'}, batch {args.batch}: self CPU per op\n")
            print(profile_table(models[name_of("tiny", "cross")], args.batch, backward))


if __name__ == "__main__":
    main()
