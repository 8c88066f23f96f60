"""Data-loader throughput and evaluation throughput of the baselines.

    python benchmarks/bench_data_and_eval.py [--data-dir DIR] [--workers 0 2] [--models resnet18 resnet50 vit]

Prints a Markdown table: decoded+cropped images/s of the training loader (per worker
count, with and without the on-disk cache) and images/s of multi-crop evaluation
(10 crops/image) for each baseline, all on the synthetic benchmark.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from iqa.data.datamodule import IQADataModule
from iqa.data.protocol import SplitProtocol
from iqa.models.pipeline import ScoringPipeline
from iqa.registry import create_model


def loader_images_per_second(data_dir: Path, workers: int, cache_dir: str | None, crop: int) -> float:
    datamodule = IQADataModule(["synthetic"], str(data_dir), SplitProtocol(test_fraction=0.0, val_fraction=0.0),
                               crop_size=crop, batch_size=32, num_workers=workers, cache_dir=cache_dir)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    if cache_dir:  # fill the cache first: measure the warm state
        for _ in loader:
            pass
    start, images = time.perf_counter(), 0
    for batch in loader:
        images += len(batch["images"])
    return images / (time.perf_counter() - start)


@torch.no_grad()
def eval_images_per_second(name: str, crop: int, device: str, n_crops: int = 10, n_images: int = 8) -> float:
    kwargs = {"size": "small"} if name in ("vit", "swin") else {}
    net = ScoringPipeline(create_model(name, **kwargs), input_size=crop).eval().to(device)
    crops = torch.rand(n_images * n_crops, 3, crop, crop, device=device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
        for _ in range(2):  # warm-up
            net(crops)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        net(crops)
        if device == "cuda":
            torch.cuda.synchronize()
    return n_images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "iqa-bench-data")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vit", "swin"])
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    print(f"| loader (synthetic, crop {args.crop}) | images/s |\n|---|---|")
    for workers in args.workers:
        print(f"| {workers} workers, no cache | {loader_images_per_second(args.data_dir, workers, None, args.crop):.0f} |")
        with tempfile.TemporaryDirectory() as cache:
            print(f"| {workers} workers, warm cache | "
                  f"{loader_images_per_second(args.data_dir, workers, cache, args.crop):.0f} |")
    where = f"{args.device}, bf16" if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\n| model (eval, 10 crops of {args.crop}², {where}) | images/s |\n|---|---|")
    for name in args.models:
        print(f"| {name} | {eval_images_per_second(name, args.crop, args.device):.2f} |")


if __name__ == "__main__":
    main()
