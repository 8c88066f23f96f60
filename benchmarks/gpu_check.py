"""Everything in benchmarks/ that needs a GPU, in one run of at most ~8 minutes on one card,
written as one Markdown table (``gpu_check.md``) and JSON (``gpu_check.json``) into OUT_DIR.

    bash benchmarks/gpu_check.sh OUT_DIR [--budget 420]
    python -m benchmarks.gpu_check OUT_DIR --tiny       # CPU smoke run: same code, tiny sizes

Sections, reusing the single benchmarks' functions:

* selective scan at VMamba-T stage-1 size (bench_selective_scan.py's default: batch 1, 4 × 192
  channels, L = 56², d_state 1, 4 groups): sequential reference, torch parallel scan, Triton,
  mamba_ssm when it imports; forward and forward+backward;
* training steps (AdamW, bf16 autocast, batch 32, 224², random weights): QMamba-T (default scan
  backend and torch's), LQMamba-T, ViT-S/16, Swin-T: images/s and peak memory;
* LoDa ViT-B against full fine-tuning of the ViT-B (bench_loda.py's comparison), same step;
* visual-prompt step (padding prompt, SGD) through a random mPLUG-Owl2 of the 7B's shapes,
  bf16, batch 4 and 32, with and without gradient checkpointing;
* 10-crop evaluation images/s (bench_data_and_eval.py) and data-loader images/s.

Each case is guarded: an error (out of memory, a missing package) goes into its row and the run
goes on; a section that would start after ``--budget`` seconds is skipped, and one that runs past
the budget is interrupted. Without CUDA (and without ``--tiny``) it exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

FULL = {"device": "cuda", "repeats": 5, "scan": (1, 4 * 192, 56 * 56, 1, 4), "batch": 32, "image": 224,
        "models": {"QMamba-T": ("qmamba", {}), "QMamba-T, torch scan": ("qmamba", {"scan_backend": "torch"}),
                   "LQMamba-T": ("qmamba", {"scan": "local"}), "ViT-S/16": ("vit", {"size": "small"}),
                   "Swin-T": ("swin", {"size": "tiny"})},
        "loda": {"LoDa ViT-B": ("loda", {"size": "base"}), "ViT-B/16, full fine-tuning": ("vit", {"size": "base"})},
        "vp_batches": (4, 32),
        "eval": (["resnet50", "vit", "swin", "qmamba"], 224, 8), "loader": ((0, 8), 224)}
TINY_QMAMBA = {"depths": [1, 1, 1, 1], "dims": 16}
TINY = {"device": "cpu", "repeats": 1, "scan": (1, 8, 64, 1, 4), "batch": 2, "image": 32,
        "models": {"LQMamba-T": ("qmamba", {"scan": "local", **TINY_QMAMBA}),
                   "ViT-S/16": ("vit", {"size": "tiny", "img_size": 32})},
        "loda": {"LoDa ViT-B": ("loda", {"size": "tiny", "vit_depth": 2, "cnn": "resnet18"})},
        "vp_batches": (2,), "eval": (["cnniqa"], 32, 2), "loader": ((0,), 32)}


def row(section: str, case: str, ms: float | None = None, images_s: float | None = None,
        peak_gib: float | None = None, note: str = "") -> dict:
    return {"section": section, "case": case, "ms": ms, "images_s": images_s, "peak_gib": peak_gib, "note": note}


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


DEADLINE = {"at": float("inf")}  # time.monotonic() at which the budget runs out; set by run()


def guarded(section: str, case: str, measure: Callable[[], list[dict]]) -> list[dict]:
    """``measure()``'s rows, or one row with the error (the run goes on), or a skipped row
    once the time budget is used up."""
    if time.monotonic() > DEADLINE["at"]:
        return [row(section, case, note="skipped: time budget used up")]
    try:
        return measure()
    except Exception as error:  # OOM, a missing package, TimeoutError when the budget runs out
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return [row(section, case, note=f"error: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
                    if str(error) else f"error: {type(error).__name__}")]


def scan_section(s: dict) -> list[dict]:
    """Selective scan, forward and forward+backward, against the sequential reference."""
    from benchmarks.bench_selective_scan import make_inputs, measure, sequential_reference
    from iqa.ops.selective_scan import _mamba_kernel, selective_scan_torch

    device, x = s["device"], make_inputs(s["device"], *s["scan"])

    def triton_scan() -> torch.Tensor:
        from iqa.ops.scan_triton import selective_scan_triton

        return selective_scan_triton(**x, delta_softplus=True)

    def mamba_scan() -> torch.Tensor:
        kernel = _mamba_kernel()
        if kernel is None:
            raise ImportError("mamba_ssm is not installed")
        return kernel(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], None, x["delta_bias"], True)

    candidates = {"sequential reference": lambda: sequential_reference(**x),
                  "torch parallel scan": lambda: selective_scan_torch(**x, delta_softplus=True, algorithm="scan"),
                  "Triton": triton_scan, "mamba_ssm": mamba_scan}
    with torch.no_grad():
        reference = sequential_reference(**x)
    rows = []
    for name, scan in candidates.items():
        def measured(name=name, scan=scan) -> list[dict]:
            if device != "cuda" and name in ("Triton", "mamba_ssm"):
                return [row("selective scan", name, note="needs CUDA")]
            first, forward_ms, both_ms, out = measure({name: scan}, device, s["repeats"])[name]
            diff = f"max |out − reference| {(out.float() - reference).abs().max().item():.1e}"
            return [row("selective scan", f"{name}, forward", forward_ms, note=diff),
                    row("selective scan", f"{name}, fwd+bwd", both_ms, note=f"first call {first:.0f} ms")]
        rows += guarded("selective scan", name, measured)
    return rows


def scan_backend(backend: str, device: str) -> str:
    """What ``backend`` runs on ``device`` (see :func:`iqa.ops.selective_scan`)."""
    from iqa.ops.selective_scan import _mamba_kernel, _triton_scan

    if backend != "auto" or device != "cuda":
        return backend if backend != "auto" else "auto → torch"
    return "auto → " + ("mamba_ssm" if _mamba_kernel() else "triton" if _triton_scan() else "torch")


def train_step_ms(model: torch.nn.Module, batch: int, image: int, device: str, repeats: int) -> float:
    """Median ms of an AdamW step on random images (bf16 autocast on CUDA), after two warm-up steps."""
    from benchmarks.bench_mplug_owl2 import median_ms

    model = model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    images, targets = torch.rand(batch, 3, image, image, device=device), torch.rand(batch, device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = F.mse_loss(model(images).float().flatten(), targets)
        loss.backward()
        optimizer.step()

    return median_ms(step, device, repeats)


def training_section(s: dict, section: str = "training step") -> list[dict]:
    from iqa.registry import create_model

    rows = []
    for label, (name, kwargs) in s["models"].items():
        def measured(label=label, name=name, kwargs=kwargs) -> list[dict]:
            reset_peak(s["device"])
            torch.manual_seed(0)
            model = create_model(name, **kwargs)
            ms = train_step_ms(model, s["batch"], s["image"], s["device"], s["repeats"])
            note = f"batch {s['batch']}, {s['image']}²" + (", bf16 autocast" if s["device"] == "cuda" else "")
            if name == "qmamba":
                note += f", scan {scan_backend(kwargs.get('scan_backend', 'auto'), s['device'])}"
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            return [row(section, label, ms, 1000 * s["batch"] / ms, peak_gib(s["device"]),
                        f"{note}, {trainable / 1e6:.2f} M trainable")]
        rows += guarded(section, label, measured)
    return rows


def loda_section(s: dict) -> list[dict]:
    """LoDa against full fine-tuning of its ViT (bench_loda.py's comparison), same step as above."""
    return training_section({**s, "models": s["loda"], "image": 224}, "LoDa")


def vp_section(s: dict) -> list[dict]:
    """Padding-prompt SGD steps through a frozen mPLUG-Owl2: the 7B's shapes (random, bf16) on
    CUDA, iqa/models/tiny_vlms.py's tiny model in the smoke run."""
    from benchmarks.bench_mplug_owl2 import median_ms, random_7b
    from iqa.models.methods import vp_mplug
    from iqa.models.pipeline import ScoringPipeline
    from iqa.models.prompts import PaddingPrompt
    from iqa.models.tiny_vlms import save_tiny_mplug_owl2, save_word_tokenizer

    device, rows = s["device"], []
    with tempfile.TemporaryDirectory() as folder:
        if device == "cuda":
            save_word_tokenizer(Path(folder))
            shape, side, border = "7B-shaped", 448, 30

            def build(_folder, *, dtype, attn_implementation, gradient_checkpointing):
                return random_7b(attn_implementation, 1)[0]

            with mock.patch.object(vp_mplug, "load_mplug_owl2", build):
                model = vp_mplug.VisualPromptMplugOwl2(folder)
        else:
            shape, side, border = "tiny", 28, 4
            model = vp_mplug.VisualPromptMplugOwl2(str(save_tiny_mplug_owl2(Path(folder))), dtype="float32")
    pipeline = ScoringPipeline(model, PaddingPrompt(size=border), input_size=side).to(device).train()
    optimizer = torch.optim.SGD([p for p in pipeline.parameters() if p.requires_grad], lr=60)
    for batch in s["vp_batches"]:
        for checkpointing in (False, True):
            def measured(batch=batch, checkpointing=checkpointing) -> list[dict]:
                model.backbone.set_gradient_checkpointing(checkpointing)
                images, targets = torch.rand(batch, 3, side, side, device=device), torch.rand(batch, device=device)

                def step() -> None:
                    optimizer.zero_grad(set_to_none=True)
                    F.mse_loss(pipeline(images).float(), targets).backward()
                    optimizer.step()

                reset_peak(device)
                ms = median_ms(step, device, s["repeats"])
                return [row("VP prompt step", case, ms, 1000 * batch / ms, peak_gib(device), f"{shape} mPLUG-Owl2")]
            case = f"batch {batch}, checkpointing {'on' if checkpointing else 'off'}"
            rows += guarded("VP prompt step", case, measured)
    return rows


def eval_and_loader_section(s: dict) -> list[dict]:
    from benchmarks.bench_data_and_eval import eval_images_per_second, loader_images_per_second

    names, crop, n_images = s["eval"]
    rows = []
    for name in names:
        rows += guarded("10-crop eval", name, lambda name=name: [row(
            "10-crop eval", name, images_s=eval_images_per_second(name, crop, s["device"], 10, n_images),
            note=f"{crop}², {n_images} images" + (", bf16" if s["device"] == "cuda" else ""))])
    workers, crop = s["loader"]
    data_dir = Path(tempfile.gettempdir()) / "iqa-bench-data"
    for n in workers:
        rows += guarded("data loader", f"{n} workers", lambda n=n: [row(
            "data loader", f"{n} workers", images_s=loader_images_per_second(data_dir, n, None, crop),
            note=f"synthetic, crop {crop}, no cache")])
    return rows


SECTIONS = {"selective scan": scan_section, "training step": training_section, "LoDa": loda_section,
            "VP prompt step": vp_section, "eval and loader": eval_and_loader_section}


def markdown(meta: dict, rows: list[dict], seconds: dict[str, float]) -> str:
    def number(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    lines = ["# GPU check", "", ", ".join(f"{key} {value}" for key, value in meta.items()), "",
             "| section | case | ms / step | images / s | peak GiB | note |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['section']} | {r['case']} | {number(r['ms'], 1)} | {number(r['images_s'], 1)} "
              f"| {number(r['peak_gib'], 1)} | {r['note']} |" for r in rows]
    lines += ["", "Seconds per section: " + ", ".join(f"{name} {value:.0f}" for name, value in seconds.items()), ""]
    return "\n".join(lines)


def run(out_dir: Path, sizes: dict, budget: float) -> list[dict]:
    """All sections within ``budget`` seconds; writes gpu_check.md and gpu_check.json."""
    start, rows, seconds = time.monotonic(), [], {}
    DEADLINE["at"] = start + budget

    def out_of_time(*_) -> None:
        raise TimeoutError(f"time budget of {budget:.0f} s used up")

    previous = signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(budget) + 1)  # interrupts the case running when the budget ends
    try:
        for name, section in SECTIONS.items():
            began = time.monotonic()
            rows += guarded(name, "all", lambda section=section: section(sizes))
            seconds[name] = time.monotonic() - began
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        DEADLINE["at"] = float("inf")
    meta = {"device": torch.cuda.get_device_name() if sizes["device"] == "cuda" else f"cpu ({platform.processor()})",
            "torch": torch.__version__, "mode": "full" if sizes is FULL else "tiny (CPU smoke run)",
            "total s": round(time.monotonic() - start)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_check.md").write_text(markdown(meta, rows, seconds))
    (out_dir / "gpu_check.json").write_text(json.dumps({"meta": meta, "rows": rows, "seconds": seconds}, indent=1))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: same code paths, tiny sizes")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all sections (default 420)")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine, "
              "or pass --tiny for the CPU smoke run", file=sys.stderr)
        return 2
    rows = run(args.out_dir, TINY if args.tiny else FULL, args.budget)
    print((args.out_dir / "gpu_check.md").read_text())
    return 1 if all(r["note"].startswith("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
