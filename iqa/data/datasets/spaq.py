"""SPAQ (Fang et al. 2020): 11,125 smartphone photographs.

Layout: ``SPAQ/Annotations/MOS and Image attribute scores.xlsx`` (``Image name``,
``MOS``; reading it needs ``openpyxl``) or its CSV export ``SPAQ/Annotations/mos.csv``,
and ``SPAQ/TestImage/``. MOS in [0, 100], higher is better. Papers usually resize the
shorter side to 512 first (``data.resize_shorter=512``).
"""

from __future__ import annotations

import pandas as pd

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord


@register_dataset
class SPAQ(DatasetDescription):
    name = "spaq"
    default_folder = "SPAQ"
    mos_range = (0.0, 100.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        csv_path = self.root / "Annotations" / "mos.csv"
        if csv_path.is_file():
            table, source = pd.read_csv(csv_path), csv_path
        else:
            source = self._require_file("Annotations/MOS and Image attribute scores.xlsx")
            try:
                table = pd.read_excel(source)
            except ImportError as error:
                raise DatasetError(f"spaq: reading {source} needs openpyxl (pip install openpyxl), "
                                   "or export it to Annotations/mos.csv") from error
        self._require_columns(source, {"Image name", "MOS"}, table.columns)
        return [ImageRecord(self.root / "TestImage" / str(name), float(mos), str(name))
                for name, mos in zip(table["Image name"], table["MOS"])]
