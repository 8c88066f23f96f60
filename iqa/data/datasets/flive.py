"""FLIVE / PaQ-2-PiQ (Ying et al., CVPR 2020): 39,810 in-the-wild images.

Layout: the ``database/`` folder of github.com/niu-haoran/FLIVE_Database, renamed
``FLIVE/``: ``labels_image.csv`` (``name, mos``) with the images at the relative paths of
``name`` (``voc_emotic_ava/…``, ``blur_dataset/…``, ``EE371R/…``). MOS in [0, 100],
higher is better.

The official split is defined by two files of github.com/baidut/PaQ-2-PiQ (``database/``),
read as pyiqa does when both are in the folder: ``labels640.csv`` lists the test images
(``name_image``: the 1,827 images larger than 640 px), ``labels=640_padded.csv`` marks the
validation images (``is_valid``); all other images are for training. Without the two
files the split is random.
"""

from __future__ import annotations

from iqa.data.datasets.base import DatasetDescription, register_dataset
from iqa.data.records import ImageRecord

TEST_FILE = "labels640.csv"
VALIDATION_FILE = "labels=640_padded.csv"


@register_dataset
class FLIVE(DatasetDescription):
    name = "flive"
    default_folder = "FLIVE"
    mos_range = (0.0, 100.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        labels, rows = self._read_csv("labels_image.csv", {"name", "mos"})
        split = self._official_split()
        return [
            ImageRecord(
                self.root / row["name"],
                self._parse_mos(row["mos"], labels),
                row["name"],
                official_split=split.get(row["name"], "train") if split else None,
            )
            for row in rows
        ]

    def _official_split(self) -> dict[str, str]:
        if not ((self.root / TEST_FILE).is_file() and (self.root / VALIDATION_FILE).is_file()):
            return {}
        _, test_rows = self._read_csv(TEST_FILE, {"name_image"})
        _, padded_rows = self._read_csv(VALIDATION_FILE, {"name_image", "is_valid"})
        split = {row["name_image"]: "val" for row in padded_rows if row["is_valid"].lower() in ("true", "1")}
        split.update({row["name_image"]: "test" for row in test_rows})
        return split
