"""CSIQ (Larson & Chandler, J. Electronic Imaging 2010): 30 references, 6 distortions, 866 images.

Layout: ``CSIQ/dst_imgs/<type>/<image>.<TAG>.<level>.png`` with the folders ``awgn``,
``jpeg``, ``jpeg2000``, ``fnoise``, ``blur``, ``contrast`` and the tags ``AWGN``, ``JPEG``,
``jpeg2000``, ``fnoise``, ``BLUR``, ``contrast`` (``1600.AWGN.1.png``); a flat
``CSIQ/dst_imgs_all/`` (HyperIQA's copy) is used instead when present. Labels come from
``CSIQ/csiq_label.txt`` (lines ``<file name> <dmos>``, the file HyperIQA and pyiqa read)
when present, else from the official ``CSIQ/csiq.DMOS.xlsx`` (sheet ``all_by_image``:
``image, dst_type, dst_lev, dmos``; needs ``openpyxl``). DMOS in [0, 1], lower is better.
"""

from __future__ import annotations

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord

TAGS = ("AWGN", "JPEG", "jpeg2000", "fnoise", "BLUR", "contrast")  # file-name tag; its lower case is the folder
SHEET_TYPES = {  # dst_type of the official sheet → file-name tag
    "noise": "AWGN", "awgn": "AWGN", "jpeg": "JPEG", "jpeg 2000": "jpeg2000", "jpeg2000": "jpeg2000",
    "1/f noise": "fnoise", "fnoise": "fnoise", "blur": "BLUR", "contrast": "contrast",
}


@register_dataset
class CSIQ(DatasetDescription):
    name = "csiq"
    default_folder = "CSIQ"
    mos_range = (0.0, 1.0)
    higher_is_better = False
    synthetic_distortions = True

    def read_official(self) -> list[ImageRecord]:
        labels = self._from_text() if (self.root / "csiq_label.txt").is_file() else self._from_sheet()
        flat = (self.root / "dst_imgs_all").is_dir()
        return [self._record(name, dmos, flat) for name, dmos in labels]

    def _from_text(self) -> list[tuple[str, float]]:
        path = self._require_file("csiq_label.txt")
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        bad = next((fields for fields in lines if len(fields) != 2), None)
        if bad is not None:
            raise DatasetError(f"csiq: {path} has a line {' '.join(bad)!r}; expected '<file name> <dmos>'")
        return [(name, self._parse_mos(dmos, path)) for name, dmos in lines]

    def _from_sheet(self) -> list[tuple[str, float]]:
        path, rows = self._read_xlsx("csiq.DMOS.xlsx", {"image", "dst_type", "dst_lev", "dmos"}, "all_by_image")
        labels = []
        for row in rows:
            tag = SHEET_TYPES.get(str(row["dst_type"]).strip().lower())
            if tag is None:
                raise DatasetError(f"csiq: {path} has an unknown dst_type {row['dst_type']!r}")
            image = str(int(row["image"])) if isinstance(row["image"], (int, float)) else str(row["image"])
            labels.append((f"{image}.{tag}.{int(row['dst_lev'])}.png", self._parse_mos(row["dmos"], path)))
        return labels

    def _record(self, name: str, dmos: float, flat: bool) -> ImageRecord:
        fields = name.split(".")
        if len(fields) != 4 or fields[1] not in TAGS:
            raise DatasetError(f"csiq: {name!r} is not a CSIQ file name like 1600.AWGN.1.png")
        reference, tag = fields[:2]
        path = self.root / "dst_imgs_all" / name if flat else self.root / "dst_imgs" / tag.lower() / name
        return ImageRecord(path, dmos, reference, tag.lower())
