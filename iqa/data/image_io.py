"""Image decoding to RGB uint8, resizing, and an optional on-disk cache of decoded images."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_HIGH_BIT_MODES = {"I;16", "I;16B", "I;16L", "I", "F"}


class CorruptImageError(ValueError):
    """An image file that cannot be decoded; the message names it and the fix."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"cannot decode image {path} ({reason}); replace or remove the file, "
            "or set data.on_corrupt=skip to skip such images with a warning"
        )
        self.path = path


def _high_bit_to_uint8(image: Image.Image) -> np.ndarray:
    """16-bit / 32-bit single-channel images scaled (not clipped) to 8 bits."""
    array = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
    if image.mode == "F":
        top = 1.0 if array.max(initial=0) <= 1.0 else 255.0
    gray = np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 array.

    EXIF orientation is applied; grayscale, palette, CMYK and 16-bit images are converted
    (PIL reads 48-bit RGB PNGs by their high bytes, i.e. already scaled to 8 bits);
    transparency is composited on white (how the image looks in a viewer).
    Raises :class:`CorruptImageError` naming the file when it cannot be decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in _HIGH_BIT_MODES:
                return _high_bit_to_uint8(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(canvas, rgba)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise CorruptImageError(path, str(error) or type(error).__name__) from error


def resize_shorter(image: np.ndarray, side: int) -> np.ndarray:
    """Resize so the shorter side is ``side`` (bicubic, antialiased), keeping the aspect."""
    height, width = image.shape[:2]
    scale = side / min(height, width)
    if scale == 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC, reducing_gap=None))


class ImageCache:
    """Decoded (and resized) images stored as ``.npy`` under ``cache_dir``.

    Entries are keyed by absolute path, size, modification time and resize setting, so
    an edited file is decoded again. Writes go to a temporary file then ``os.replace``,
    so concurrent DataLoader workers and DDP ranks can share one cache safely.
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def _entry(self, path: Path, resize: int | None) -> Path:
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{resize}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.npy"

    def load(self, path: str | Path, resize: int | None = None) -> np.ndarray:
        """The decoded image, from the cache when present, else decoded and stored."""
        path = Path(path)
        entry = self._entry(path, resize)
        if entry.is_file():
            try:
                return np.load(entry)
            except (OSError, ValueError):
                pass  # a damaged entry is rebuilt below
        image = read_rgb(path)
        if resize:
            image = resize_shorter(image, resize)
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=entry.parent, suffix=".tmp", delete=False) as handle:
            np.save(handle, image)
        os.replace(handle.name, entry)
        return image
