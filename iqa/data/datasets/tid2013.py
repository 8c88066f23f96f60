"""TID2013 (Ponomarenko et al. 2015): 25 references × 24 distortions × 5 levels.

Layout: ``tid2013/mos_with_names.txt`` (lines ``<mos> <file name>``) +
``tid2013/distorted_images/``. MOS in [0, 9], higher is better; reference and type from
``i01_08_3.bmp``.
"""

from __future__ import annotations

from pathlib import Path

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord


@register_dataset
class TID2013(DatasetDescription):
    name = "tid2013"
    default_folder = "tid2013"
    mos_range = (0.0, 9.0)
    higher_is_better = True
    synthetic_distortions = True

    def read_official(self) -> list[ImageRecord]:
        labels = self._require_file("mos_with_names.txt")
        records = []
        for number, line in enumerate(labels.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise DatasetError(f"tid2013: {labels} line {number} is not '<mos> <name>': {line!r}")
            mos, name = fields
            reference, distortion = Path(name).stem.lower().split("_")[:2]
            records.append(ImageRecord(self.root / "distorted_images" / name, self._parse_mos(mos, labels),
                                       reference, f"type_{distortion}"))
        return records
