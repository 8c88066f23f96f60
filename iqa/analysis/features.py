"""What the distortion injection changes inside the ViT (LoDa Figs. 6 and 7), for a trained LoDa
checkpoint and a folder of images, LoDa beside the plain frozen ViT it adapts:

* ``fourier.png``: relative log amplitude of each block's feature maps by frequency (Park &
  Kim, ICLR 2022, Fig. 2): the 2D Fourier amplitude of the patch tokens, averaged over channels
  and images, along the diagonal from 0 to π, minus its value at 0. Higher values at π mean the
  block keeps more high-frequency (local) information.
* ``attention_<image>.png``: the last block's CLS attention to the patches (mean over heads),
  over the image.

    python -m iqa.analysis.features --checkpoint outputs/.../best.ckpt --images DIR --out DIR
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from iqa.data.image_io import find_images, read_rgb, resize_shorter
from iqa.data.transforms import MultiCrop
from iqa.models.methods.loda import LoDa


@torch.no_grad()
def block_outputs(model: LoDa, images: torch.Tensor, inject: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each block's output tokens ``(B, T, C)`` (:meth:`LoDa.block_outputs`) and the last block's
    CLS attention ``(B, P)`` (mean over heads), with LoDa's injection or through the plain frozen ViT."""
    vit = model.vit
    captured: dict[str, torch.Tensor] = {}
    last_attention = vit.blocks[-1].attn

    def keep_input(module: torch.nn.Module, args: tuple[torch.Tensor], _: torch.Tensor) -> None:
        captured["attention_input"] = args[0]

    hook = last_attention.register_forward_hook(keep_input)
    try:
        outputs = model.block_outputs(images, inject=inject)
    finally:
        hook.remove()
    patches = outputs[-1].shape[1] - vit.num_prefix_tokens  # LoDa's extra tokens (Table 7 ablation) left out
    return outputs, cls_attention(last_attention, captured["attention_input"], vit.num_prefix_tokens)[:, :patches]


def cls_attention(attention: torch.nn.Module, x: torch.Tensor, prefix_tokens: int) -> torch.Tensor:
    """Softmax attention of the CLS query over the patch keys, averaged over heads (timm ``Attention``)."""
    batch, tokens, width = x.shape
    heads = attention.num_heads
    q, k, _ = attention.qkv(x).reshape(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    q, k = attention.q_norm(q), attention.k_norm(k)
    weights = ((q[:, :, :1] * attention.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, 1, T)
    return weights.mean(dim=1)[:, 0, prefix_tokens:]


def relative_log_amplitude(tokens: torch.Tensor, prefix_tokens: int) -> np.ndarray:
    """Diagonal Fourier log-amplitude profile of the patch tokens, relative to frequency 0."""
    patches = tokens[:, prefix_tokens:]
    side = math.isqrt(patches.shape[1])
    maps = patches.transpose(1, 2).reshape(len(tokens), -1, side, side).float()
    amplitude = torch.fft.fft2(maps).abs().clamp_min(1e-12).log()
    profile = amplitude.mean(dim=(0, 1)).diagonal()[: side // 2 + 1]  # frequency 0 … π along the diagonal
    return (profile - profile[0]).cpu().numpy()


def load_images(folder: Path, size: int, mean: tuple, std: tuple) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The images of ``folder`` (:func:`~iqa.data.image_io.find_images`), resized and centre-cropped
    to ``size``: names, [0, 1] pixels and normalised pixels."""
    paths = find_images(folder)
    crop = MultiCrop(size, 1, train=False, mode="center")
    pixels = torch.stack([crop(resize_shorter(read_rgb(p), size), i)[0] for i, p in enumerate(paths)]).float() / 255
    normalised = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return [p.stem for p in paths], pixels, normalised


def fourier_figure(profiles: dict[str, list[np.ndarray]], path: Path) -> None:
    figure = Figure(figsize=(8, 3.2), dpi=120, layout="tight")
    for column, (name, per_block) in enumerate(profiles.items()):
        axes = figure.add_subplot(1, len(profiles) + 1, column + 1)
        for depth, profile in enumerate(per_block):
            colour = (depth / max(1, len(per_block) - 1), 0.2, 1 - depth / max(1, len(per_block) - 1))
            axes.plot(np.linspace(0, 1, len(profile)), profile, color=colour, linewidth=1)
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("frequency (× π)")
        axes.set_ylabel("Δ log amplitude")
    axes = figure.add_subplot(1, len(profiles) + 1, len(profiles) + 1)
    for name, per_block in profiles.items():
        axes.plot(range(1, len(per_block) + 1), [p[-1] for p in per_block], marker="o", label=name)
    axes.set_xlabel("block")
    axes.set_ylabel("Δ log amplitude at π")
    axes.legend(fontsize=8)
    figure.savefig(path, format="png")


def attention_figure(pixels: torch.Tensor, maps: dict[str, torch.Tensor], path: Path) -> None:
    figure = Figure(figsize=(3 * (len(maps) + 1), 3), dpi=120, layout="tight")
    axes = figure.add_subplot(1, len(maps) + 1, 1)
    axes.imshow(pixels.permute(1, 2, 0).numpy())
    axes.set_title("image", fontsize=9)
    axes.axis("off")
    for column, (name, attention) in enumerate(maps.items()):
        side = math.isqrt(attention.numel())
        axes = figure.add_subplot(1, len(maps) + 1, column + 2)
        axes.imshow(pixels.permute(1, 2, 0).numpy())
        axes.imshow(attention.reshape(side, side).numpy(), cmap="jet", alpha=0.5,
                    extent=(0, pixels.shape[-1], pixels.shape[-2], 0), interpolation="bilinear")
        axes.set_title(f"{name}: CLS attention", fontsize=9)
        axes.axis("off")
    figure.savefig(path, format="png")


def analyse(model: LoDa, images: Path, out: Path) -> list[Path]:
    """Write ``fourier.png`` and one ``attention_<image>.png`` per image into ``out``."""
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    names, pixels, normalised = load_images(images, model.fixed_input_size, model.mean, model.std)
    prefix = model.vit.num_prefix_tokens
    results = {"plain ViT": block_outputs(model, normalised, inject=False),
               "LoDa": block_outputs(model, normalised, inject=True)}
    written = [out / "fourier.png"]
    fourier_figure({name: [relative_log_amplitude(t, prefix) for t in blocks]
                    for name, (blocks, _) in results.items()}, written[0])
    for i, name in enumerate(names):
        written.append(out / f"attention_{name}.png")
        attention_figure(pixels[i], {key: attention[i] for key, (_, attention) in results.items()}, written[-1])
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="a LoDa run's .ckpt (train.py)")
    parser.add_argument("--images", required=True, type=Path, help="folder of images")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNGs")
    args = parser.parse_args(argv)
    from iqa.checkpoint import load_module

    module, _ = load_module(args.checkpoint)
    model = module.net.model
    if not isinstance(model, LoDa):
        raise SystemExit(f"--checkpoint {args.checkpoint} is a {type(model).__name__} run; this analysis needs "
                         "a model=loda run")
    for path in analyse(model, args.images, args.out):
        print(path)


if __name__ == "__main__":
    main()
