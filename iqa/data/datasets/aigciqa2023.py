"""AIGCIQA2023 (Wang et al. 2023): 2,400 AI-generated images, quality dimension.

Layout: ``AIGCIQA2023/DATA/MOS/mosz1.mat`` (``MOSz``, the quality z-scores, one per
image in order) + ``AIGCIQA2023/Image/allimg/<index>.png`` (index from 0).
Scores in [0, 100], higher is better.
"""

from __future__ import annotations

from iqa.data.datasets.base import DatasetDescription, register_dataset
from iqa.data.records import ImageRecord


@register_dataset
class AIGCIQA2023(DatasetDescription):
    name = "aigciqa2023"
    default_folder = "AIGCIQA2023"
    mos_range = (0.0, 100.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        scores = self._read_mat("DATA/MOS/mosz1.mat", "MOSz").reshape(-1)
        return [ImageRecord(self.root / "Image" / "allimg" / f"{index}.png", float(score), str(index))
                for index, score in enumerate(scores)]
