"""AGIQA-3K (Li et al. 2023): 2,982 AI-generated images.

Layout: ``AGIQA-3K/data.csv`` (``name``, ``mos_quality``, …) with the images in
``AGIQA-3K/`` itself or ``AGIQA-3K/images/``. ``mos_quality`` in [0, 5], higher is better;
each image is its own reference.
"""

from __future__ import annotations

import csv

from iqa.data.datasets.base import DatasetDescription, register_dataset
from iqa.data.records import ImageRecord


@register_dataset
class AGIQA3K(DatasetDescription):
    name = "agiqa"
    default_folder = "AGIQA-3K"
    mos_range = (0.0, 5.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        labels = self._require_file("data.csv")
        with open(labels, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self._require_columns(labels, {"name", "mos_quality"}, rows[0] if rows else [])
        folder = self.root / "images" if (self.root / "images").is_dir() else self.root
        return [ImageRecord(folder / row["name"], self._parse_mos(row["mos_quality"], labels), row["name"])
                for row in rows]
