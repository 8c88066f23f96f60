"""SPAQ (Fang et al., CVPR 2020): 11,125 smartphone photographs.

Layout: ``SPAQ/Annotations/MOS and Image attribute scores.xlsx`` (``Image name, MOS,
Brightness, Colorfulness, Contrast, Noisiness, Sharpness``; reading it needs ``openpyxl``)
or the same sheet saved as ``SPAQ/Annotations/MOS and Image attribute scores.csv`` (read
first when present), and the photographs in ``SPAQ/TestImage/``. MOS in [0, 100], higher
is better. The full-size photographs are usually downscaled first (the SPAQ paper: shorter
side 512, ``data.resize_shorter=512``).
"""

from __future__ import annotations

from iqa.data.datasets.base import DatasetDescription, register_dataset
from iqa.data.records import ImageRecord

LABELS = "Annotations/MOS and Image attribute scores"
COLUMNS = {"Image name", "MOS"}


@register_dataset
class SPAQ(DatasetDescription):
    name = "spaq"
    default_folder = "SPAQ"
    mos_range = (0.0, 100.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        if (self.root / f"{LABELS}.csv").is_file():
            labels, rows = self._read_csv(f"{LABELS}.csv", COLUMNS)
        else:
            labels, rows = self._read_xlsx(f"{LABELS}.xlsx", COLUMNS)
        names = [str(row["Image name"]) for row in rows]
        return [
            ImageRecord(self.root / "TestImage" / name, self._parse_mos(row["MOS"], labels), name)
            for name, row in zip(names, rows)
        ]
