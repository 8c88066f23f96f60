"""Score your own images with a trained checkpoint (same multi-crop averaging as testing)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from iqa.checkpoint import load_module
from iqa.data.image_io import DEFAULT_MAX_PIXELS, CorruptImageError, _to_rgb, read_rgb, resize_shorter
from iqa.data.transforms import MultiCrop

ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


def _unit_to_uint8(values: np.ndarray, what: str) -> np.ndarray:
    """[0, 1] floats → uint8 (rounded); values that do not round into 0…255 are refused, not clipped."""
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)) or round(low * 255) < 0 or round(high * 255) > 255:
        raise ValueError(f"{what} has values in [{low:g}, {high:g}]; float images must be in [0, 1] "
                         "(not 0-255, not normalised by a mean/std): pass uint8, or divide by 255")
    return np.clip(np.round(values * 255), 0, 255).astype(np.uint8)


def to_rgb_array(image: ImageLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One image as the (H, W, 3) uint8 RGB array that testing crops.

    Accepts an image file path; a PIL image (EXIF orientation, grayscale, palette and
    transparency handled as for files); a numpy array (H, W, 3) RGB or (H, W) grayscale; a
    tensor (3, H, W) or (1, H, W) — arrays and tensors as uint8, or floats in [0, 1].

    Raises:
        TypeError: another kind of object. ValueError: a wrong shape, dtype or value range.
    """
    if isinstance(image, (str, Path)):
        return read_rgb(Path(image), max_pixels)
    if isinstance(image, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(image))
    if isinstance(image, torch.Tensor):
        what = f"tensor of shape {tuple(image.shape)} and dtype {image.dtype}"
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            hint = "; it looks channels-last: use .permute(2, 0, 1)" if image.ndim == 3 and image.shape[-1] in (1, 3) \
                else ""
            raise ValueError(f"expected an image tensor (3, H, W) or (1, H, W), got a {what}{hint}")
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise ValueError(f"expected a uint8 or float tensor, got a {what}")
        image = image.detach().cpu().permute(1, 2, 0)
        image = (image.double() if image.is_floating_point() else image).numpy()  # bfloat16 has no numpy dtype
        kind = "tensor"
    elif isinstance(image, np.ndarray):
        what = f"array of shape {image.shape} and dtype {image.dtype}"
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[-1] not in (1, 3):
            hint = "; it looks channels-first: use .transpose(1, 2, 0)" if image.ndim == 3 and image.shape[0] == 3 \
                else ""
            raise ValueError(f"expected an image array (H, W, 3) RGB or (H, W) grayscale, got an {what}{hint}")
        if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"expected a uint8 or float array, got an {what}")
        kind = "array"
    else:
        raise TypeError(f"cannot score a {type(image).__name__}: pass a path, a PIL image, an (H, W, 3) uint8 "
                        "array or a (3, H, W) tensor, or a list of them")
    if image.dtype != np.uint8:
        image = _unit_to_uint8(image.astype(np.float64), f"the {kind} ({what})")
    return np.ascontiguousarray(np.repeat(image, 3, axis=2) if image.shape[-1] == 1 else image)


class Scorer:
    """Callable quality scorer made by :func:`load_scorer`; see :meth:`__call__`.

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

    def _score(self, image: ImageLike) -> float:
        array = to_rgb_array(image, self.max_pixels)
        if self.resize:
            array = resize_shorter(array, self.resize)
        return self.score_crops(self.crops(array, image_id=0))

    def try_score(self, path: str | Path) -> tuple[float | None, str]:
        """``(score, "ok")`` for an image file, or ``(None, reason)`` where it cannot be read."""
        try:
            return self(path), "ok"
        except CorruptImageError as error:
            return None, error.reason or "cannot decode the image"
        except OSError as error:  # gone or unreadable since it was listed
            return None, error.strerror or str(error)

    def __call__(self, images: ImageLike | Iterable[ImageLike]) -> float | list[float]:
        """The predicted quality of one image (a float) or of several (a list of floats, in order).

        An image is a file path (``str``/``Path``), a PIL image, a numpy array (H, W, 3) RGB
        or (H, W) grayscale, or a tensor (3, H, W); arrays and tensors hold uint8 values or
        floats in [0, 1]. A list (or any iterable) of images, a (B, 3, H, W) tensor and a
        (B, H, W, 3) array give one score per image.

        The score is the checkpoint's test protocol applied to the image: resized like the
        training data (``data.resize_shorter``), cut into ``data.n_test_crops`` crops of
        ``data.crop_size`` (``data.test_crop_mode``), and the model's predictions averaged
        over the crops. It is in the scale of the training labels: the dataset's MOS mapped
        to [0, 1], higher is better (not clipped, so slightly outside [0, 1] is possible).

        Raises:
            TypeError, ValueError: an unsupported object, shape, dtype or value range (named).
            FileNotFoundError, CorruptImageError: a path that is missing or not an image.
        """
        if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
            return [self._score(image) for image in images]
        if isinstance(images, (str, Path, Image.Image, torch.Tensor, np.ndarray)):
            return self._score(images)
        if not isinstance(images, Iterable):
            raise TypeError(f"cannot score a {type(images).__name__}: pass a path, a PIL image, an array or a "
                            "tensor, or a list of them")
        return [self._score(image) for image in images]


def load_scorer(ckpt_path: str | Path, device: str | None = None, n_crops: int | None = None) -> Scorer:
    """A :class:`Scorer` for a checkpoint written by ``train.py``: ``load_scorer(ckpt)(image)``.

    Args:
        ckpt_path: a ``.ckpt`` file (e.g. ``<run>/checkpoints/best.ckpt``); it is read as
            weights only, and frozen backbones are rebuilt from its config.
        device: ``"cuda"``, ``"cpu"``, …; default: CUDA when available, else CPU.
        n_crops: crops averaged per image; default: the run's ``data.n_test_crops``
            (fewer is faster, one is a single crop).

    Returns:
        A callable: image(s) → multi-crop averaged quality in the training label scale
        ([0, 1], higher is better); see :meth:`Scorer.__call__` for the accepted inputs.
    """
    module, config = load_module(ckpt_path)
    data = config["data"]
    crops = MultiCrop(data["crop_size"], n_crops or data["n_test_crops"], train=False, mode=data["test_crop_mode"])
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Scorer(module, crops, data.get("resize_shorter"), device, data.get("max_pixels", DEFAULT_MAX_PIXELS))
