"""Score your own images with a trained checkpoint (same multi-crop averaging as testing)."""

from __future__ import annotations

from collections.abc import Iterable
from glob import glob
from pathlib import Path

import torch

from iqa.checkpoint import load_module
from iqa.data.image_io import DEFAULT_MAX_PIXELS, CorruptImageError, read_rgb, resize_shorter
from iqa.data.transforms import MultiCrop

IMAGE_SUFFIXES = {".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"}


def find_images(images: str | Path) -> list[Path]:
    """Files of a folder (recursively) or of a glob pattern, sorted."""
    pattern = str(images)
    if Path(pattern).is_dir():
        paths = [p for p in Path(pattern).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        paths = [Path(p) for p in glob(pattern, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise FileNotFoundError(f"no images found at {images!r}; pass a folder or a glob such as 'photos/*.jpg'")
    return sorted(paths)


class Scorer:
    """Callable quality scorer. ``scorer(path | [paths] | tensor)`` → score(s) in the
    training label scale ([0, 1], higher is better).

    A tensor is an image (3, H, W) or a batch (B, 3, H, W) of [0, 1] floats or uint8.
    Image files with more than ``max_pixels`` pixels are refused (``None``: no limit).
    """

    def __init__(self, module, crops: MultiCrop, resize: int | None, device: str | torch.device,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        self.module = module.to(device).eval()
        self.crops = crops
        self.resize = resize
        self.device = torch.device(device)
        self.max_pixels = max_pixels

    @torch.no_grad()
    def score_crops(self, crops: torch.Tensor) -> float:
        """Mean score over the (K, 3, h, w) crops of one image."""
        return float(self.module(crops.to(self.device)).float().mean())

    def _crops_of(self, image: torch.Tensor | str | Path) -> torch.Tensor:
        if isinstance(image, (str, Path)):
            array = read_rgb(Path(image), self.max_pixels)
        else:
            if image.dtype != torch.uint8:
                image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
            array = image.permute(1, 2, 0).cpu().numpy()
        if self.resize:
            array = resize_shorter(array, self.resize)
        return self.crops(array, image_id=0)

    def try_score(self, path: str | Path) -> tuple[float | None, str]:
        """``(score, "ok")`` for an image file, or ``(None, reason)`` where it cannot be read."""
        try:
            return self(path), "ok"
        except CorruptImageError as error:
            return None, error.reason or "cannot decode the image"
        except OSError as error:  # gone or unreadable since it was listed
            return None, error.strerror or str(error)

    def __call__(self, images: str | Path | torch.Tensor | Iterable) -> float | list[float]:
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return [self.score_crops(self._crops_of(image)) for image in images]
        if isinstance(images, (str, Path, torch.Tensor)):
            return self.score_crops(self._crops_of(images))
        return [self.score_crops(self._crops_of(image)) for image in images]


def load_scorer(ckpt_path: str | Path, device: str | None = None, n_crops: int | None = None) -> Scorer:
    """A :class:`Scorer` from a checkpoint, with the crops of the run's test protocol."""
    module, config = load_module(ckpt_path)
    data = config["data"]
    crops = MultiCrop(data["crop_size"], n_crops or data["n_test_crops"], train=False, mode=data["test_crop_mode"])
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Scorer(module, crops, data.get("resize_shorter"), device, data.get("max_pixels", DEFAULT_MAX_PIXELS))
