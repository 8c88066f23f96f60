"""Decoding image files to RGB uint8 arrays, resizing, and an on-disk cache of decoded images."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from iqa.errors import ConfigurationError, UserError

_HIGH_DEPTH_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")
DEFAULT_MAX_PIXELS: int | None = Image.MAX_IMAGE_PIXELS  # data.max_pixels: Pillow's decompression-bomb limit
_PILLOW_LIMIT = threading.Lock()
IMAGE_SUFFIXES = {".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"}  # what find_images lists


class CorruptImageError(UserError, ValueError):
    """A file that cannot be decoded as an image; the message names it and the fixes."""

    doc = "docs/reliability.md"

    def __init__(self, path: str | Path, reason: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"cannot decode image {self.path}{detail}; remove or replace the file, "
            "or set data.on_corrupt=skip to skip undecodable images with a warning"
        )

    def __reduce__(self):  # rebuilt from (path, reason) when sent between processes
        return type(self), (self.path, self.reason)


def too_many_pixels(size: tuple[int, int], max_pixels: int | None) -> str | None:
    """Why an image of ``size`` (width, height) is refused under ``max_pixels``, or ``None``."""
    width, height = size
    if max_pixels is None or width * height <= max_pixels:
        return None
    return (f"{width}x{height} is {width * height} pixels, more than data.max_pixels={max_pixels} "
            "(a decompression-bomb guard; raise it, or set null, for genuinely huge images)")


@contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Open images under this to apply ``max_pixels`` instead of Pillow's own limit.

    Pillow's ``DecompressionBombWarning`` becomes an error; where ``max_pixels`` allows more
    than Pillow does (or is ``None``), Pillow's global limit is lifted meanwhile (under a
    lock). The caller checks ``max_pixels`` itself (:func:`too_many_pixels`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        pillow = Image.MAX_IMAGE_PIXELS
        if pillow is None or (max_pixels is not None and max_pixels <= pillow):
            yield
            return
        with _PILLOW_LIMIT:
            Image.MAX_IMAGE_PIXELS = None
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = pillow


def read_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array, as an image viewer shows it.

    * EXIF orientation is applied.
    * Grayscale, palette and CMYK images are converted (CMYK naively, without ICC profiles).
    * Transparency (RGBA, LA, palette or ``tRNS`` transparency) is composited on white,
      so transparent areas look as they do on a page rather than exposing hidden colours.
    * 16-bit and 32-bit grayscale (modes ``I;16``, ``I``, ``F``) is scaled to 8 bits, not
      clipped: by 255/65535 for 16-bit data; mode ``I``/``F`` by the full scale of the
      smallest of 8 bits, 16 bits or the maximum that holds the values (``F`` values in
      [0, 1] by 255). Pillow decodes 16-bit RGB(A) PNG and TIFF files to 8 bits itself,
      by the high byte of each sample (``v >> 8``), which is such a scaling too.
    * An image of more than ``max_pixels`` pixels (``data.max_pixels``; ``None``: no
      limit) is refused from its header, before any decoding.

    Raises:
        CorruptImageError: the file is not a decodable image (unknown format, truncated,
            damaged or unreadable) or has too many pixels. A missing file raises
            ``FileNotFoundError``.
    """
    path = Path(path)
    try:
        with pixel_limit(max_pixels), Image.open(path) as image:
            reason = too_many_pixels(image.size, max_pixels)
            if reason:
                raise CorruptImageError(path, reason)
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except (FileNotFoundError, CorruptImageError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise CorruptImageError(path, f"{error} (data.max_pixels={max_pixels})") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:  # Pillow's ways of failing on bad data
        raise CorruptImageError(path, str(error) or type(error).__name__) from error


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in _HIGH_DEPTH_GRAY:
        return np.repeat(_high_depth_to_uint8(image)[..., None], 3, axis=2)
    if image.mode in _WITH_ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _high_depth_to_uint8(image: Image.Image) -> np.ndarray:
    values = np.asarray(image, dtype=np.float64)
    peak = values.max(initial=0.0)
    if image.mode.startswith("I;16"):
        full_scale = 65535.0
    elif image.mode == "F" and peak <= 1.0:
        full_scale = 1.0
    else:
        full_scale = next((top for top in (255.0, 65535.0) if peak <= top), peak)
    return np.clip(np.round(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def resize_shorter(image: np.ndarray, side: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image so its shorter side is ``side``, keeping the aspect.

    Bicubic; Pillow widens the kernel when shrinking, so downscaling is antialiased.
    """
    if side < 1:
        raise ConfigurationError(f"data.resize_shorter must be a positive side in pixels, got {side}")
    height, width = image.shape[:2]
    if min(height, width) == side:
        return image
    scale = side / min(height, width)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)


class ImageCache:
    """Decoded (and resized) images kept as ``.npy`` files under ``cache_dir``.

    An entry is keyed by the file's absolute path, size and modification time and by the
    resize setting, so an edited or replaced image is decoded again. Entries are written
    to a temporary file and moved into place with ``os.replace`` (atomic), so DataLoader
    workers and DDP ranks can share one cache: a reader sees a whole entry or none.
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def entry(self, path: str | Path, resize: int | None = None) -> Path:
        """The cache file that holds (or will hold) ``path`` decoded with this setting."""
        path = Path(path).resolve()
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{resize}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.npy"

    def load(self, path: str | Path, resize: int | None = None,
             max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """``path`` decoded and, if ``resize`` (``data.resize_shorter``) is set, resized so
        its shorter side is ``resize``: from the cache if there, else decoded (under
        ``max_pixels``, see :func:`read_rgb`) and stored."""
        entry = self.entry(path, resize)
        try:
            return np.load(entry)
        except (OSError, ValueError):  # absent, or damaged (e.g. by a full disk): made below
            pass
        image = read_rgb(path, max_pixels)
        if resize:
            image = resize_shorter(image, resize)
        entry.parent.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=entry.parent, prefix=entry.stem, suffix=".tmp", delete=False) as handle:
            np.save(handle, image)
        os.replace(handle.name, entry)
        return image


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
