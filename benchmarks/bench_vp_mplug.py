"""Visual-prompt training step on a frozen mPLUG-Owl2, tiny random model on the CPU.

    python benchmarks/bench_vp_mplug.py [--batch 4 32] [--repeats 5] [--threads 2]

One step = padding prompt (30 px scaled to the tiny 28² tower: 4 px) → normalisation → frozen
mPLUG-Owl2 (iqa/models/tiny_vlms.py configuration) → rating-word readout → MSE → backward to the
prompt → SGD. Prints a Markdown table of median milliseconds per step, with and without gradient
checkpointing. The 7B-shaped GPU numbers are benchmarks/bench_mplug_owl2.py's (docs/mplug_owl2.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from iqa.models.pipeline import ScoringPipeline
from iqa.models.prompts import PaddingPrompt
from iqa.models.tiny_vlms import save_tiny_mplug_owl2
from iqa.registry import create_model


def step_ms(pipeline: ScoringPipeline, batch: int, repeats: int) -> float:
    optimizer = torch.optim.SGD([p for p in pipeline.parameters() if p.requires_grad], lr=60)
    images, target = torch.rand(batch, 3, 28, 28), torch.rand(batch)
    times = []
    for _ in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(pipeline(images), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_tiny_mplug_owl2(Path(folder) / "mplug_owl2")
        print(f"cpu, {args.threads} threads; tiny mPLUG-Owl2 (28² tower, 2+2+2 layers); median of {args.repeats}\n")
        print("| batch | gradient checkpointing | ms / step | images / s |")
        print("|---|---|---|---|")
        for batch in args.batch:
            for checkpointing in (False, True):
                model = create_model("vp_mplug", hf_folder=str(checkpoint), dtype="float32",
                                     gradient_checkpointing=checkpointing)
                pipeline = ScoringPipeline(model, PaddingPrompt(size=4), input_size=28).train()
                ms = step_ms(pipeline, batch, args.repeats)
                print(f"| {batch} | {'on' if checkpointing else 'off'} | {ms:.1f} | {1000 * batch / ms:.0f} |")


if __name__ == "__main__":
    main()
