"""QMamba-T and LQMamba-T against timm's ViT-S/16 and Swin-T: forward speed on this machine,
parameters and GFLOPs at 224², plus the six sizes of the QMamba paper's Table 1.

    python benchmarks/bench_qmamba.py [--batch 8] [--repeats 3] [--device cpu] [--scan-backend torch]

Speed: random weights, eval mode, ``torch.no_grad``, fp32, random 224² images; after one
warm-up batch the fastest of ``--repeats`` batches is reported, the models taking turns (the
machine may be shared).
GFLOPs are multiply-accumulates, as the papers count them: QMamba's by ``VSSM.flops``
(fvcore's conventions plus the selective scan), the timm models' by ``torch.utils.flop_counter``
(matmuls and convolutions; their LayerNorms add < 0.3 %). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from iqa.registry import create_model

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


def images_per_second(models: dict[str, torch.nn.Module], batch: int, repeats: int, device: str) -> dict[str, float]:
    """Fastest of ``repeats`` batches per model; the models take turns, so that a load that
    comes and goes on a shared machine reaches all of them alike."""
    images = torch.randn(batch, 3, 224, 224, device=device)
    fastest = dict.fromkeys(models, float("inf"))
    with torch.no_grad():
        for turn in range(repeats + 1):  # turn 0 warms up
            for label, model in models.items():
                start = time.perf_counter()
                model(images)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if turn:
                    fastest[label] = min(fastest[label], time.perf_counter() - start)
    return {label: batch / seconds for label, seconds in fastest.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scan-backend", default="torch", choices=["auto", "cuda", "torch"])
    args = parser.parse_args()

    print("| model | params (M) | paper | GFLOPs | paper |\n|---|---|---|---|---|")
    for (size, scan), (paper_params, paper_gflops) in TABLE_1.items():
        with torch.device("meta"):  # shapes only
            model = create_model("qmamba", size=size, scan=scan)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name_of(size, scan)} | {params:.2f} | {paper_params:.2f} | {model.backbone.flops(224) / 1e9:.2f} "
              f"| {paper_gflops:.2f} |")

    torch.manual_seed(0)
    models = {name_of("tiny", scan): create_model("qmamba", size="tiny", scan=scan, scan_backend=args.scan_backend)
              for scan in ("cross", "local")}
    models.update({label: timm.create_model(arch, num_classes=1) for label, arch in TIMM_MODELS.items()})
    gmacs = {label: (m.backbone.flops(224) if hasattr(m, "backbone") else timm_gmacs(m) * 1e9) / 1e9
             for label, m in models.items()}
    speed = images_per_second({label: m.to(args.device).eval() for label, m in models.items()}, args.batch,
                              args.repeats, args.device)
    print(f"\nForward, batch {args.batch}, 224², {args.device}, {torch.get_num_threads()} threads, "
          f"scan backend {args.scan_backend}, torch {torch.__version__}\n")
    print("| model | params (M) | GFLOPs | images / s | × ViT-S/16 | × Swin-T |\n|---|---|---|---|---|---|")
    for label, model in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {label} | {params:.2f} | {gmacs[label]:.2f} | {speed[label]:.2f} "
              f"| {speed[label] / speed['ViT-S/16']:.3f} | {speed[label] / speed['Swin-T']:.3f} |")


if __name__ == "__main__":
    main()
