"""AGIQA-3K (Li et al., IEEE TCSVT 2023): 2,982 AI-generated images.

Layout: ``AGIQA-3K/data.csv`` (github.com/lcysyzxdxc/AGIQA-3k-Database: ``name, prompt,
adj1, adj2, style, mos_quality, std_quality, mos_align, std_align``) and the JPEGs of the
release's ``AGIQA-3K.zip`` either in ``AGIQA-3K/`` itself or in ``AGIQA-3K/images/``.
The label is the perception score ``mos_quality`` (normalised MOS in [0, 5], higher is
better). Several generators share a prompt, but the papers split by image, so each image
is its own reference.
"""

from __future__ import annotations

from iqa.data.datasets.base import DatasetDescription, register_dataset
from iqa.data.records import ImageRecord


@register_dataset
class AGIQA3K(DatasetDescription):
    name = "agiqa"
    default_folder = "AGIQA-3K"
    mos_range = (0.0, 5.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        labels, rows = self._read_csv("data.csv", {"name", "mos_quality"})
        folder = self.root / "images" if (self.root / "images").is_dir() else self.root
        return [
            ImageRecord(folder / row["name"], self._parse_mos(row["mos_quality"], labels), row["name"])
            for row in rows
        ]
