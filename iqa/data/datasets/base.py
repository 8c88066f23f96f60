"""Dataset descriptions: where a benchmark's files are and how to read its labels.

A description knows its folder layout, its label file, its MOS range and direction.
It returns :class:`~iqa.data.records.ImageRecord` lists; splitting, decoding and
cropping happen elsewhere (``iqa.data.protocol``, ``iqa.data.dataset``).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import ClassVar

from iqa.data.records import ImageRecord
from iqa.errors import UserError

log = logging.getLogger(__name__)


class DatasetError(UserError, ValueError):
    """Bad dataset input: the message names the file or key and the fix."""

    doc = "docs/datasets.md"


class DatasetDescription:
    """Base class of the benchmark descriptions.

    Subclasses set the class attributes and implement :meth:`read_official`.

    Args:
        root: the dataset folder (the official layout, or any folder the
            ``meta_file`` paths are relative to).
        meta_file: optional pyiqa-style CSV (``img_name,mos,...`` or
            ``ref_name,dist_name,mos,...``; ``dmos`` is accepted for ``mos``) used instead
            of the official label files; a relative path is taken relative to ``root``.
    """

    name: ClassVar[str]
    default_folder: ClassVar[str]
    mos_range: ClassVar[tuple[float, float]]
    higher_is_better: ClassVar[bool] = True
    synthetic_distortions: ClassVar[bool] = False

    def __init__(self, root: str | Path, meta_file: str | Path | None = None) -> None:
        self.root = Path(root).expanduser()
        self.meta_file = None if meta_file is None else self._resolve(meta_file)

    # -- label normalisation -------------------------------------------------------
    def normalize(self, mos: float) -> float:
        """MOS/DMOS → [0, 1], higher is better (the training label)."""
        low, high = self.mos_range
        unit = (mos - low) / (high - low)
        return unit if self.higher_is_better else 1.0 - unit

    def denormalize(self, score: float):
        """Inverse of :meth:`normalize` (works on floats and tensors)."""
        low, high = self.mos_range
        unit = score if self.higher_is_better else 1.0 - score
        return low + unit * (high - low)

    # -- reading -------------------------------------------------------------------
    def records(self) -> list[ImageRecord]:
        """All labelled images, validated (root exists, each image listed once, files exist,
        MOS in range). An image listed twice with different scores is an error naming both
        rows; listed twice with the same score, it is kept once with a warning."""
        self.check_root()
        records = self.read_meta_csv(self.meta_file) if self.meta_file else self.read_official()
        if not records:
            raise DatasetError(f"{self.name}: no labelled images found under {self.root}")
        records = self._check_duplicates(records)
        self._check_files(records)
        self._check_mos_range(records)
        return records

    def read_official(self) -> list[ImageRecord]:
        """Read the dataset's official label files in their official layout."""
        raise NotImplementedError

    def read_meta_csv(self, meta_file: Path) -> list[ImageRecord]:
        """Read a pyiqa-style meta CSV: ``img_name,mos`` or ``ref_name,dist_name,mos``."""
        if not meta_file.is_file():
            raise DatasetError(f"{self.name}: meta file {meta_file} does not exist; fix data.meta_file")
        with open(meta_file, newline="") as handle:
            rows = list(csv.DictReader(handle))
        columns = set(rows[0]) if rows else set()
        image_column = "dist_name" if "dist_name" in columns else "img_name"
        score_column = "dmos" if "dmos" in columns and "mos" not in columns else "mos"  # pyiqa's KADID, CSIQ
        required = {image_column, score_column}
        if not required <= columns:
            raise DatasetError(
                f"{self.name}: {meta_file} lacks column(s) {sorted(required - columns)}; "
                "a pyiqa meta CSV has 'img_name,mos' or 'ref_name,dist_name,mos' (or dmos)"
            )
        records = []
        for row in rows:
            image = row[image_column]
            reference = row.get("ref_name") or image
            records.append(
                ImageRecord(self._resolve(image), self._parse_mos(row[score_column], meta_file), Path(reference).stem)
            )
        return records

    # -- helpers for subclasses ----------------------------------------------------
    def _resolve(self, relative: str | Path) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.root / path

    def _require_file(self, relative: str | Path) -> Path:
        path = self._resolve(relative)
        if not path.is_file():
            raise DatasetError(
                f"{self.name}: label file {path} is missing; place the official file there (see docs/datasets.md; "
                f"source: docs/weights_and_data.md#{self.name}) or point data.roots.{self.name} at the "
                f"{self.default_folder}/ folder"
            )
        return path

    def _require_columns(self, path: Path, columns: set[str], header: list[str] | set[str]) -> None:
        missing = sorted(set(columns) - set(header))
        if missing:
            raise DatasetError(
                f"{self.name}: {path} has no column(s) {missing} (found {sorted(header)}); "
                "is it the official label file? See docs/datasets.md"
            )

    def _read_mat(self, relative: str, key: str):
        """Variable ``key`` of a MATLAB label file, squeezed to a NumPy array."""
        import numpy as np
        from scipy.io import loadmat

        path = self._require_file(relative)
        content = loadmat(path)
        if key not in content:
            raise DatasetError(f"{self.name}: {path} has no variable {key!r}; is it the official file?")
        return np.asarray(content[key]).squeeze()

    def _read_mat_strings(self, relative: str, key: str) -> list[str]:
        """A MATLAB cell array of strings (e.g. image names) as a list."""
        import numpy as np

        return [str(np.asarray(cell).squeeze()) for cell in self._read_mat(relative, key).reshape(-1)]

    def _read_csv(self, relative: str | Path, columns: set[str]) -> tuple[Path, list[dict[str, str]]]:
        """Rows of a CSV label file (header names stripped, Excel's BOM ignored), columns checked."""
        path = self._require_file(relative)
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            rows = [row + [""] * (len(header) - len(row)) for row in reader if any(row)]
        self._require_columns(path, columns, header)
        return path, [dict(zip(header, (cell.strip() for cell in row))) for row in rows]

    def _read_xlsx(self, relative: str | Path, columns: set[str], sheet: str | int = 0) -> tuple[Path, list[dict]]:
        """Rows of an Excel label sheet; the header is the first row holding all ``columns``."""
        import pandas as pd

        path = self._require_file(relative)
        try:
            table = pd.read_excel(path, sheet_name=sheet, header=None, dtype=object)
        except ImportError as error:
            raise DatasetError(
                f"{self.name}: reading {path} needs openpyxl (pip install openpyxl), "
                "or use the plain-text label file described in docs/datasets.md"
            ) from error
        except ValueError as error:  # no such sheet, or not a workbook
            raise DatasetError(
                f"{self.name}: cannot read sheet {sheet!r} of {path} ({error}); is it the official file?"
            ) from error
        cells = [[cell.strip() if isinstance(cell, str) else cell for cell in row] for row in table.to_numpy()]
        start = next((i for i, row in enumerate(cells) if columns <= set(row)), None)
        if start is None:  # no header row: report the first row as the header found
            self._require_columns(path, columns, [str(cell) for cell in cells[0]] if cells else [])
        return path, [dict(zip(cells[start], row)) for row in cells[start + 1:] if any(pd.notna(cell) for cell in row)]

    def _parse_mos(self, value: str, source: Path) -> float:
        try:
            return float(value)
        except ValueError as error:
            raise DatasetError(f"{self.name}: {source} holds a non-numeric score {value!r}") from error

    def check_root(self) -> None:
        """Raise :class:`DatasetError` when the dataset folder is missing or empty."""
        if not self.root.is_dir():
            raise DatasetError(
                f"{self.name}: dataset folder {self.root} does not exist; download the dataset there "
                f"(docs/weights_and_data.md#{self.name}) "
                f"or set data.roots.{self.name} (or paths.data_dir, under which it is {self.default_folder}/)"
            )
        if not any(self.root.iterdir()):
            raise DatasetError(f"{self.name}: dataset folder {self.root} is empty; see docs/datasets.md and "
                               f"docs/weights_and_data.md#{self.name}")

    def _check_duplicates(self, records: list[ImageRecord]) -> list[ImageRecord]:
        """``records`` with each image once (the first row of exact repeats); rows are counted
        from 1 among the labelled images in reading order."""
        first: dict[str, int] = {}
        kept, repeated = [], []
        for row, record in enumerate(records, start=1):
            key = os.path.normpath(record.path)
            if key not in first:
                first[key] = row
                kept.append(record)
                continue
            earlier = records[first[key] - 1]
            if earlier.mos != record.mos:
                source = self.meta_file or "the label file"
                raise DatasetError(
                    f"{self.name}: one image has two different scores in {source}: row {first[key]} "
                    f"{earlier.path} (score {earlier.mos}) and row {row} {record.path} (score {record.mos}); "
                    "keep one row per image"
                )
            repeated.append(f"{record.path} (rows {first[key]} and {row})")
        if repeated:
            log.warning("%s: %d image(s) listed twice with the same score, used once: %s%s", self.name,
                        len(repeated), ", ".join(repeated[:5]), " ..." if len(repeated) > 5 else "")
        return kept

    def _check_files(self, records: list[ImageRecord]) -> None:
        missing = [record.path for record in records if not record.path.is_file()]
        if missing:
            shown = ", ".join(str(path) for path in missing[:3])
            raise DatasetError(
                f"{self.name}: {len(missing)} of {len(records)} listed images are missing, e.g. {shown}; "
                "restore them or remove them from the label file"
            )

    def _check_mos_range(self, records: list[ImageRecord]) -> None:
        low, high = self.mos_range
        tolerance = 1e-6 * (high - low)
        bad = [record for record in records if not low - tolerance <= record.mos <= high + tolerance]
        if bad:
            example = bad[0]
            raise DatasetError(
                f"{self.name}: {len(bad)} score(s) outside the MOS range [{low}, {high}], "
                f"e.g. {example.mos} for {example.path}; check the label file or the dataset choice"
            )


_DESCRIPTIONS: dict[str, type[DatasetDescription]] = {}


def register_dataset(cls: type[DatasetDescription]) -> type[DatasetDescription]:
    """Class decorator: make a description available by its ``name``."""
    _DESCRIPTIONS[cls.name] = cls
    return cls
