"""FLIVE / PaQ-2-PiQ (Ying et al. 2020): ~40K in-the-wild images.

Layout: ``FLIVE/labels_image.csv`` (``name``, ``mos``) with the images under ``FLIVE/``
at the relative paths of ``name`` (e.g. ``voc_emotic_ava/...``). The official split is
read from an optional ``set`` column (train / validation / test), as the release's
``labels_image.csv`` variants and pyiqa's split files provide. MOS in [0, 100].
"""

from __future__ import annotations

import csv

from iqa.data.datasets.base import DatasetDescription, register_dataset
from iqa.data.records import ImageRecord

SETS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@register_dataset
class FLIVE(DatasetDescription):
    name = "flive"
    default_folder = "FLIVE"
    mos_range = (0.0, 100.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        labels = self._require_file("labels_image.csv")
        with open(labels, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self._require_columns(labels, {"name", "mos"}, rows[0] if rows else [])
        return [
            ImageRecord(self.root / row["name"], self._parse_mos(row["mos"], labels), row["name"],
                        official_split=SETS.get(str(row.get("set", "")).strip().lower()))
            for row in rows
        ]
