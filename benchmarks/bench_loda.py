"""LoDa vs full fine-tuning of the same ViT, and vs the frozen backbones' own cost: train-step
time, peak memory, and GFLOPs.

    python benchmarks/bench_loda.py [--vit base] [--batch 8] [--steps 5] [--device cpu]

The reference "frozen backbones" is the least any method that adapts features inside the frozen
ViT must pay: forward through the frozen ResNet-50 and ViT and backward through the ViT's
activations to its input (the CNN needs no backward: nothing before it trains), no weight
gradients, no optimiser (the issue's goal: LoDa ≤ 1.3× this).
Each training setup runs in its own process (AdamW, MSE loss, random 224² images, fp32);
one warm-up step also allocates the optimiser state, then the fastest of ``--steps`` steps
is reported (the machine may be shared). Peak memory is the process's peak resident set
size on CPU and ``torch.cuda.max_memory_allocated`` on CUDA; "above weights" is that peak
minus the memory held once the model is built (activations, gradients, optimiser state).
FLOPs are counted by ``torch.utils.flop_counter`` for one 224² image, with the math
attention kernel so that attention matmuls are counted; 1 multiply-accumulate = 2 FLOPs.
Random weights: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from iqa.registry import create_model

SETUPS = {"frozen backbones": "frozen", "full fine-tuning": "vit", "LoDa": "loda"}


class FrozenBackbones(torch.nn.Module):
    """LoDa's frozen ViT and CNN side by side, nothing trainable; gradients flow through the ViT."""

    def __init__(self, vit: str) -> None:
        super().__init__()
        loda = create_model("loda", size=vit)
        self.vit, self.cnn = loda.vit, loda.cnn

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            cnn_features = self.cnn(images)[-1].mean(dim=(1, 2, 3))
        return self.vit(images).mean(-1) + cnn_features


def build(setup: str, vit: str) -> torch.nn.Module:
    kind = SETUPS[setup]
    if kind == "frozen":
        return FrozenBackbones(vit)
    return create_model("vit", size=vit) if kind == "vit" else create_model("loda", size=vit)


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure_training(setup: str, vit: str, batch: int, steps: int, device: str) -> dict[str, float]:
    """Fastest of ``steps`` AdamW steps after one warm-up step, and the peak memory."""
    torch.manual_seed(0)
    model = build(setup, vit).to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4) if trainable else None
    images, targets = torch.randn(batch, 3, 224, 224, device=device), torch.rand(batch, device=device)
    images.requires_grad_(not trainable)  # the frozen reference backpropagates to its input
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    weights_mib = torch.cuda.memory_allocated() / 2**20 if cuda else resident_mib()

    def timed_step() -> float:
        start = time.perf_counter()
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        F.mse_loss(model(images), targets).backward()
        if optimizer is not None:
            optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed_step()  # warm-up; allocates the optimiser state
    seconds = min(timed_step() for _ in range(steps))  # the least disturbed step on a shared machine
    peak_mib = (torch.cuda.max_memory_allocated() / 2**20 if cuda
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10)
    return {"seconds": seconds, "peak_mib": peak_mib, "above_weights_mib": peak_mib - weights_mib,
            "trainable": sum(p.numel() for p in trainable)}


def gflops_per_image(model: torch.nn.Module) -> dict[str, float]:
    """Forward GFLOPs of one 224² image: the total, then each top-level submodule's."""
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        model.eval()(torch.randn(1, 3, 224, 224))
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__

    def part(prefix: str) -> float:  # a module not called as a whole (ModuleList) has no entry
        inside = [name for name in counts if name == prefix or name.startswith(prefix + ".")]
        return sum(counts[name] for name in inside if not any(name.startswith(outer + ".") for outer in inside))

    return {"total": counter.get_total_flops() / 1e9,
            **{child: part(f"{root}.{child}") / 1e9 for child, _ in model.named_children()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vit", default="base", choices=["tiny", "small", "base"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=list(SETUPS), help=argparse.SUPPRESS)  # one setup, in a child process
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure_training(args.only, args.vit, args.batch, args.steps, args.device)))
        return

    results = {}
    for setup in SETUPS:
        child = [sys.executable, __file__, "--only", setup, "--vit", args.vit, "--batch", str(args.batch),
                 "--steps", str(args.steps), "--device", args.device]
        results[setup] = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
    print(f"ViT-{args.vit[0].upper()}/16, batch {args.batch}, 224², {args.device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| setup | trainable params | s / train step | images / s | peak memory (MiB) | above weights (MiB) |")
    print("|---|---|---|---|---|---|")
    for setup, r in results.items():
        print(f"| {setup} | {r['trainable']:,} | {r['seconds']:.3f} | {args.batch / r['seconds']:.1f} "
              f"| {r['peak_mib']:.0f} | {r['above_weights_mib']:.0f} |")
    full, loda, frozen = results["full fine-tuning"], results["LoDa"], results["frozen backbones"]
    ratios = [loda[key] / full[key] for key in ("trainable", "seconds", "peak_mib", "above_weights_mib")]
    print("| LoDa / full | {:.3f} | {:.2f} | | {:.2f} | {:.2f} |".format(*ratios))
    print(f"| LoDa / frozen backbones | | {loda['seconds'] / frozen['seconds']:.2f} | | "
          f"{loda['peak_mib'] / frozen['peak_mib']:.2f} | {loda['above_weights_mib'] / frozen['above_weights_mib']:.2f} |")

    print("\n| model (forward, one 224² image) | GFLOPs | GMACs | parts (GFLOPs) |")
    print("|---|---|---|---|")
    for setup in ("full fine-tuning", "LoDa"):
        flops = gflops_per_image(build(setup, args.vit))
        total = flops.pop("total")
        parts = ", ".join(f"{name} {value:.2f}" for name, value in flops.items() if value > 0)
        print(f"| {'ViT' if setup == 'full fine-tuning' else 'LoDa'} | {total:.2f} | {total / 2:.2f} | {parts} |")


if __name__ == "__main__":
    main()
