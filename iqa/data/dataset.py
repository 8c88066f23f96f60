"""The torch ``Dataset`` of labelled images: decode → (resize) → multi-crop."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from iqa.data.datasets.base import DatasetDescription
from iqa.data.image_io import DEFAULT_MAX_PIXELS, CorruptImageError, ImageCache, read_rgb, resize_shorter
from iqa.data.records import ImageRecord
from iqa.data.transforms import MultiCrop
from iqa.errors import ConfigurationError

log = logging.getLogger(__name__)


class IQAImageDataset(Dataset):
    """Items are dicts: ``images`` (K, 3, h, w) uint8, ``label`` in [0, 1] higher-better,
    ``mos`` in the dataset's own units, ``image_id`` (unique within ``records``).

    Args:
        description: the benchmark the records come from (label normalisation).
        records: the images of one split part.
        ids: one id per record (stable across ranks; used to deduplicate in metrics).
        crops: the crop sampler.
        resize_shorter: resize the shorter side to this before cropping (LoDa: 384).
        cache: optional on-disk cache of decoded, resized images.
        on_corrupt: ``"fail"`` raises on an undecodable file; ``"skip"`` logs it and
            drops the item from its batch.
        max_pixels: images with more pixels are undecodable (``None``: no limit).
    """

    def __init__(
        self,
        description: DatasetDescription,
        records: list[ImageRecord],
        ids: list[int],
        crops: MultiCrop,
        resize_shorter: int | None = None,
        cache: ImageCache | None = None,
        on_corrupt: str = "fail",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        if on_corrupt not in ("fail", "skip"):
            raise ConfigurationError(f"data.on_corrupt must be 'fail' or 'skip', got {on_corrupt!r}")
        self.description = description
        self.records = records
        self.ids = ids
        self.crops = crops
        self.resize_shorter = resize_shorter
        self.cache = cache
        self.on_corrupt = on_corrupt
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.records)

    def _decode(self, path: Path):
        if self.cache is not None:
            return self.cache.load(path, self.resize_shorter, self.max_pixels)
        image = read_rgb(path, self.max_pixels)
        return resize_shorter(image, self.resize_shorter) if self.resize_shorter else image

    def __getitem__(self, index: int) -> dict | None:
        return self.item(index)

    def item(self, index: int, generator: torch.Generator | None = None) -> dict | None:
        """Item ``index``; random training crops are drawn from ``generator``."""
        record = self.records[index]
        try:
            image = self._decode(record.path)
        except CorruptImageError as error:
            if self.on_corrupt == "fail":
                raise
            log.warning("skipping corrupt image %s (data.on_corrupt=skip): %s", record.path, error)
            return None
        return {
            "images": self.crops(image, self.ids[index], generator),
            "label": torch.tensor(self.description.normalize(record.mos), dtype=torch.float32),
            "mos": torch.tensor(record.mos, dtype=torch.float32),
            "image_id": torch.tensor(self.ids[index], dtype=torch.int64),
        }


def collate_skipping_corrupt(items: list[dict | None]) -> dict | None:
    """``default_collate`` over the items that decoded (``None`` marks a skipped image)."""
    kept = [item for item in items if item is not None]
    return default_collate(kept) if kept else None
