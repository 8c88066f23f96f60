"""AIGCIQA2023 (Wang et al., arXiv 2307.00211, 2023): 2,400 AI-generated images, quality dimension.

Layout: ``AIGCIQA2023/DATA/MOS/mosz1.mat`` (``MOSz``, 2,400 × 1: the quality z-score MOS;
``mosz2``/``mosz3`` hold authenticity and correspondence) and
``AIGCIQA2023/Image/allimg/<index>.png`` for index 0…2399 in the order of ``MOSz``
(``pic-index.xlsx`` of github.com/wangjiarui153/AIGCIQA2023 maps an index to its
generator and prompt). Scores on the 0–100 z-score scale, higher is better; each image is
its own reference, as in the papers' random splits.
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
        return [
            ImageRecord(self.root / "Image" / "allimg" / f"{index}.png", float(score), str(index))
            for index, score in enumerate(scores)
        ]
