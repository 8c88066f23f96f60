"""CSIQ (Larson & Chandler 2010): 30 references, 6 distortions, 866 images.

Layout: ``CSIQ/csiq.DMOS.xlsx`` (sheet ``all_by_image``: ``image``, ``dst_type``,
``dst_lev``, ``dmos``; reading it needs ``openpyxl``) or its CSV export
``CSIQ/csiq_dmos.csv`` with the same columns, and ``CSIQ/dst_imgs/<type>/<image>.<TYPE>.<level>.png``.
DMOS in [0, 1], lower is better.
"""

from __future__ import annotations

import pandas as pd

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord

TYPE_FOLDERS = {"noise": "awgn", "jpeg": "jpeg", "jpeg 2000": "jpeg2000", "jpeg2000": "jpeg2000",
                "1/f noise": "fnoise", "fnoise": "fnoise", "blur": "blur", "contrast": "contrast", "awgn": "awgn"}
FILE_TAGS = {"awgn": "AWGN", "jpeg": "JPEG", "jpeg2000": "jpeg2000", "fnoise": "fnoise", "blur": "BLUR",
             "contrast": "contrast"}


@register_dataset
class CSIQ(DatasetDescription):
    name = "csiq"
    default_folder = "CSIQ"
    mos_range = (0.0, 1.0)
    higher_is_better = False
    synthetic_distortions = True

    def _table(self) -> tuple[pd.DataFrame, str]:
        csv_path = self.root / "csiq_dmos.csv"
        if csv_path.is_file():
            return pd.read_csv(csv_path), str(csv_path)
        xlsx = self._require_file("csiq.DMOS.xlsx")
        try:
            return pd.read_excel(xlsx, sheet_name="all_by_image"), str(xlsx)
        except ImportError as error:
            raise DatasetError(f"csiq: reading {xlsx} needs openpyxl (pip install openpyxl), "
                               "or export the sheet all_by_image to csiq_dmos.csv") from error

    def read_official(self) -> list[ImageRecord]:
        table, source = self._table()
        table.columns = [str(c).strip() for c in table.columns]
        self._require_columns(source, {"image", "dst_type", "dst_lev", "dmos"}, table.columns)
        records = []
        for row in table.dropna(subset=["image", "dmos"]).itertuples(index=False):
            folder = TYPE_FOLDERS.get(str(row.dst_type).strip().lower())
            if folder is None:
                raise DatasetError(f"csiq: {source} has unknown dst_type {row.dst_type!r}")
            image = str(row.image).strip()
            name = f"{image}.{FILE_TAGS[folder]}.{int(row.dst_lev)}.png"
            records.append(ImageRecord(self.root / "dst_imgs" / folder / name, float(row.dmos), image, folder))
        return records
