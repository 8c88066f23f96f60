"""mPLUG-Owl2 backbone speed and memory.

    python benchmarks/bench_mplug_owl2.py [--device cpu|cuda] [--batch 8] [--repeats 10] [--fixture DIR]

cpu: the golden fixture's tiny model (``../shared/fixtures/mplug_owl2_tiny``), 2 threads.
cuda: a randomly initialised model of the released 7B's shapes (ViT-L/14 at 448², LLaMA-2-7B,
all config defaults), bfloat16, one image per prompt (65 visual + 31 text tokens).
Rows: inference forward, and forward+backward to the input images with every parameter frozen
(pixel-prompt training), with and without gradient checkpointing. Prints a Markdown table of
median milliseconds per batch and peak GPU memory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from iqa.models.mplug_owl2 import IMAGE_TOKEN_INDEX, MplugOwl2Config, MplugOwl2ForCausalLM, load_mplug_owl2

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "mplug_owl2_tiny"
DEFAULT_7B = {"model_type": "mplug_owl2", "visual_config": {"visual_model": {}, "visual_abstractor": {}}}


def tiny_model(attn_implementation: str, fixture: Path) -> tuple[MplugOwl2ForCausalLM, dict]:
    from safetensors.torch import load_file

    io = load_file(fixture / "io.safetensors")
    model = load_mplug_owl2(fixture, attn_implementation=attn_implementation)
    return model, {"input_ids": io["input_ids"], "images": io["images"], "attention_mask": io["attention_mask"]}


def random_7b(attn_implementation: str, batch: int) -> tuple[MplugOwl2ForCausalLM, dict]:
    config = MplugOwl2Config.from_dict(DEFAULT_7B, attn_implementation)
    torch.set_default_dtype(torch.bfloat16)  # rotary and sin-cos tables are built in float32 explicitly
    with torch.device("cuda"):
        model = MplugOwl2ForCausalLM(config).eval()
    torch.set_default_dtype(torch.float32)
    text = torch.randint(3, 32000, (batch, 31), device="cuda")
    text[:, 0], text[:, 6] = 1, IMAGE_TOKEN_INDEX
    images = torch.randn(batch, 3, 448, 448, device="cuda")
    return model, {"input_ids": text, "images": images, "attention_mask": torch.ones_like(text)}


def median_ms(step, device: str, repeats: int) -> float:
    times = []
    for index in range(repeats + 2):  # two warm-up runs
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        if index >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(2)
    print("| attention | pass | ms / batch | peak GPU GiB |\n|---|---|---|---|")
    for attn_implementation in ("eager", "sdpa"):
        if args.device == "cpu":
            model, inputs = tiny_model(attn_implementation, args.fixture)
        else:
            model, inputs = random_7b(attn_implementation, args.batch)
        model.requires_grad_(False)

        def forward():
            with torch.no_grad():
                model(**inputs)

        def image_gradient():
            images = inputs["images"].clone().requires_grad_(True)
            logits = model(input_ids=inputs["input_ids"], images=images).logits
            logits[:, -1].float().logsumexp(-1).sum().backward()

        for name, step, checkpointing in (("forward", forward, False), ("fwd+bwd to images", image_gradient, False),
                                          ("fwd+bwd, checkpointing", image_gradient, True)):
            model.set_gradient_checkpointing(checkpointing)
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            ms = median_ms(step, args.device, args.repeats)
            peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
            print(f"| {attn_implementation} | {name} | {ms:.1f} | {peak:.1f} |")
        del model, inputs
        if args.device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
