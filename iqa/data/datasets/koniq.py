"""KonIQ-10k (Hosu et al. 2020): 10,073 in-the-wild images.

Layout: ``koniq10k/koniq10k_scores_and_distributions.csv`` + ``koniq10k/512x384/``
(``data.datasets`` folder name ``1024x768`` also accepted). The label is ``MOS_zscore``
(0–100, the scale the papers report, e.g. "MOS/100" in the visual-prompt seed).
The official split (``set`` = training / validation / test) is read from
``koniq10k_distributions_sets.csv`` when that file is present.
"""

from __future__ import annotations

import csv

from iqa.data.datasets.base import DatasetDescription, register_dataset
from iqa.data.records import ImageRecord

OFFICIAL_SETS = {"training": "train", "validation": "val", "test": "test"}


@register_dataset
class KonIQ10k(DatasetDescription):
    name = "koniq"
    default_folder = "koniq10k"
    mos_range = (0.0, 100.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        labels = self._require_file("koniq10k_scores_and_distributions.csv")
        with open(labels, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self._require_columns(labels, {"image_name", "MOS_zscore"}, rows[0] if rows else [])
        folder = next((self.root / d for d in ("512x384", "1024x768") if (self.root / d).is_dir()), self.root / "512x384")
        split = self._official_split()
        return [
            ImageRecord(folder / row["image_name"], self._parse_mos(row["MOS_zscore"], labels), row["image_name"],
                        official_split=split.get(row["image_name"]))
            for row in rows
        ]

    def _official_split(self) -> dict[str, str]:
        sets = self.root / "koniq10k_distributions_sets.csv"
        if not sets.is_file():
            return {}
        with open(sets, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self._require_columns(sets, {"image_name", "set"}, rows[0] if rows else [])
        return {row["image_name"]: OFFICIAL_SETS[row["set"].strip().lower()] for row in rows}
