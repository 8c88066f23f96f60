"""BIQ2021 (Ahmed & Asif, J. Electronic Imaging 31(5) 053010, 2022): 12,000 authentic photographs.

Ahmed and Asif, "BIQ2021: a large-scale blind image quality assessment database", Journal of
Electronic Imaging 31(5), 053010 (2022), doi:10.1117/1.JEI.31.5.053010.

Layout: a clone of github.com/nisarahmedrana/BIQ2021: ``Images/`` holds 12,000 JPEGs
(512×512 px but for 11 smaller ones of ``ss02``) named ``ss01 (k).jpg`` (subset 1, 2,000
images), ``ss02 (k).jpg`` (subset 2, 2,000) and ``ss03 (k).jpg`` (subset 3, 8,000). The
official split is the two label files ``Train (Images and MOS).csv`` (10,000 rows) and
``Test (Images and MOS).csv`` (2,000 rows), columns ``Image Name,MOS``. MOS: the mean of
30 laboratory ratings, rescaled to [0, 1], higher is better. There is no official validation
part: the protocol carves one from the training part. Each image is its own reference.

Quirks of the release (commit 62c7b40), handled here:

* the training file has two empty trailing columns (header ``Image Name,MOS,,``): ignored;
* its line 8838 lists ``ss02 (1014).jpg`` while the file is ``ss02 (1014).JPG``: a name that
  matches a file only case-insensitively is resolved to that file, with one warning naming
  the row; a name matching no file stays as listed, so the missing-image check names it;
* file names contain spaces and parentheses (used as they are).

A name listed twice (in one file or in both) is an error, since it would put one image in
two parts of the split.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord

log = logging.getLogger(__name__)

IMAGES = "Images"
SPLIT_FILES = {"train": "Train (Images and MOS).csv", "test": "Test (Images and MOS).csv"}
NAME, SCORE = "Image Name", "MOS"


@register_dataset
class BIQ2021(DatasetDescription):
    name = "biq2021"
    default_folder = "biq2021"
    mos_range = (0.0, 1.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        folder = self.root / IMAGES
        on_disk = os.listdir(folder) if folder.is_dir() else []  # one listing, not a stat per row
        by_lower_name = {name.lower(): name for name in on_disk}
        exact = set(on_disk)
        records, listed = [], {}
        for part, label_file in SPLIT_FILES.items():
            labels, rows = self._rows(label_file)
            for line, name, score in rows:
                row = f"{labels} line {line}"
                if name.lower() in listed:
                    raise DatasetError(f"biq2021: {row} lists {name!r} again (first at {listed[name.lower()]}); "
                                       "an image may appear only once in the split files")
                listed[name.lower()] = row
                found = name if name in exact else by_lower_name.get(name.lower(), name)
                if found != name:
                    log.warning("biq2021: %s lists %r but the file is %r (case differs); using that file",
                                row, name, found)
                records.append(ImageRecord(folder / found, self._parse_mos(score, labels), found,
                                           official_split=part))
        return records

    def _rows(self, relative: str) -> tuple[Path, list[tuple[int, str, str]]]:
        """A split file's path and the (line number, image name, score) of each non-empty row."""
        path = self._require_file(relative)
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [cell.strip() for cell in next(reader, [])]  # extra empty columns are ignored
            self._require_columns(path, {NAME, SCORE}, header)
            name_at, score_at = header.index(NAME), header.index(SCORE)
            rows = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                row = row + [""] * (len(header) - len(row))
                rows.append((reader.line_num, row[name_at].strip(), row[score_at].strip()))
        return path, rows
