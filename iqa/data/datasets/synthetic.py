"""The bundled synthetic benchmark, generated from scikit-image's sample photographs.

Fifteen photographs shipped inside scikit-image's wheel (no network) are resized to a
shorter side of 256 px and cut into two halves: 30 reference contents. Each reference
gets five KADID-like distortions (blur, Gaussian noise, JPEG, impulse noise,
pixelation) at four levels (:data:`DISTORTIONS`), 630 images in all.

Ground truth (documented, not perceptual data): the pristine reference has MOS 100 and
level ``k`` of every distortion has MOS ``100 - 20 k``; the levels are set so that each
level looks about equally severe across types. Higher is better, range [0, 100].
Splits go by reference (``synthetic_distortions``), as for KADID.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import skimage
from PIL import Image, ImageFilter
from skimage import io as skio

from iqa.data.datasets.base import DatasetDescription, register_dataset
from iqa.data.records import ImageRecord

SOURCES = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
    "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg",
)
LABELS = "labels.csv"
VERSION = "2"  # bump when the recipe changes: older copies are regenerated


def _blur(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(sigma))


def _noise(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    array = np.asarray(image, dtype=np.float64) / 255 + rng.normal(0, sigma, (image.height, image.width, 3))
    return Image.fromarray(np.clip(np.round(array * 255), 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, quality: float, rng: np.random.Generator) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _impulse(image: Image.Image, density: float, rng: np.random.Generator) -> Image.Image:
    array = np.array(image)
    hit = rng.random(array.shape[:2]) < density
    array[hit] = np.where(rng.random((int(hit.sum()), 1)) < 0.5, 0, 255)
    return Image.fromarray(array)


def _pixelate(image: Image.Image, block: float, rng: np.random.Generator) -> Image.Image:
    small = image.resize((max(1, round(image.width / block)), max(1, round(image.height / block))), Image.BOX)
    return small.resize(image.size, Image.NEAREST)


DISTORTIONS = {
    "gaussian_blur": (_blur, (0.8, 1.5, 2.5, 4.0)),          # sigma in px
    "gaussian_noise": (_noise, (0.02, 0.05, 0.09, 0.15)),    # std of [0, 1] pixels
    "jpeg": (_jpeg, (50, 25, 12, 5)),                        # JPEG quality
    "impulse_noise": (_impulse, (0.01, 0.03, 0.06, 0.1)),    # share of salt-and-pepper pixels
    "pixelate": (_pixelate, (2, 3, 4, 6)),                   # block side in px
}


def mos_of(level: int) -> float:
    """Ground-truth quality: 100 for the reference (level 0), minus 20 per level."""
    return 100.0 - 20.0 * level


def _references() -> dict[str, Image.Image]:
    """Two half-image references per source photograph, shorter side 256 px before cutting."""
    folder = Path(skimage.data.__file__).parent
    references = {}
    for name in SOURCES:
        array = skio.imread(folder / name)
        image = Image.fromarray(array).convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        width, height = image.size
        if width >= height:
            halves = (image.crop((0, 0, width // 2, height)), image.crop((width // 2, 0, 2 * (width // 2), height)))
        else:
            halves = (image.crop((0, 0, width, height // 2)), image.crop((0, height // 2, width, 2 * (height // 2))))
        stem = Path(name).stem
        references[f"{stem}_a"], references[f"{stem}_b"] = halves
    return references


def generate(root: Path) -> None:
    """Write the images and ``labels.csv`` into ``root`` (atomically: built in a temporary
    sibling folder and renamed, so an interrupted run leaves no half-made dataset)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        rows = []
        (staging / "images").mkdir()
        for ref_index, (reference, image) in enumerate(sorted(_references().items())):
            image.save(staging / "images" / f"{reference}.png")
            rows.append((f"images/{reference}.png", reference, "reference", 0, mos_of(0)))
            for type_index, (distortion, (apply, levels)) in enumerate(DISTORTIONS.items()):
                for level, parameter in enumerate(levels, start=1):
                    rng = np.random.default_rng([ref_index, type_index, level])
                    name = f"images/{reference}_{distortion}_{level}.png"
                    apply(image, parameter, rng).save(staging / name)
                    rows.append((name, reference, distortion, level, mos_of(level)))
        (staging / "VERSION").write_text(VERSION)
        with open(staging / LABELS, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "reference", "distortion", "level", "mos"])
            writer.writerows(rows)
        if root.exists():  # an empty or incomplete folder from an earlier interrupted attempt
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@register_dataset
class SyntheticIQA(DatasetDescription):
    """The quickstart/test benchmark (see the module docstring); generated on first use."""

    name = "synthetic"
    default_folder = "synthetic"
    mos_range = (0.0, 100.0)
    higher_is_better = True
    synthetic_distortions = True

    def records(self) -> list[ImageRecord]:
        version = self.root / "VERSION"
        if self.meta_file is None and not (version.is_file() and version.read_text() == VERSION):
            generate(self.root)
        return super().records()

    def read_official(self) -> list[ImageRecord]:
        labels = self._require_file(LABELS)
        with open(labels, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self._require_columns(labels, {"image", "reference", "distortion", "mos"}, rows[0] if rows else [])
        return [
            ImageRecord(self.root / row["image"], self._parse_mos(row["mos"], labels), row["reference"],
                        None if row["distortion"] == "reference" else row["distortion"])
            for row in rows
        ]
