"""Train/validation/test split protocols.

* Official split where the dataset ships one (KonIQ-10k, FLIVE) and ``use_official`` is on.
* Otherwise ``n`` seeded random splits (``split_index`` 0–9 for the usual 10-split protocol),
  80/20 by default, grouped by *reference* so that no content crosses train/test for
  synthetic-distortion datasets (KADID, LIVE, CSIQ, TID2013); authentic datasets have one
  reference per image.
* Validation is carved from the training part only; the test part never selects a model
  (the pyiqa #162 pitfall). ``val_fraction=0`` reproduces the papers' no-validation runs.
* ``train_fraction`` keeps part of the training references (data-efficiency studies).
* ``split_file`` reads a given split CSV (an image-name column and a ``split``/``set`` column).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iqa.data.datasets.base import DatasetError
from iqa.data.records import ImageRecord
from iqa.errors import ConfigurationError

_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}


@dataclass(frozen=True)
class Split:
    """Record indices of the three parts."""

    train: list[int] = field(default_factory=list)
    val: list[int] = field(default_factory=list)
    test: list[int] = field(default_factory=list)


@dataclass
class SplitProtocol:
    """How a dataset's records are divided into train / val / test.

    Args:
        split_index: which of the seeded random splits (0-based).
        test_fraction: share of references in the test part (0 trains on everything,
            e.g. the source dataset of a cross-dataset run).
        val_fraction: share of the *training* references kept for validation.
        train_fraction: share of the remaining training references actually used.
        use_official: use the dataset's official split when it has one.
        split_file: CSV of a fixed split; overrides the rest.
        seed: base seed; split ``i`` uses ``seed + i``.
    """

    split_index: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    train_fraction: float = 1.0
    use_official: bool = True
    split_file: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("test_fraction", "val_fraction"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigurationError(f"protocol.{key} must be in [0, 1), got {getattr(self, key)}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigurationError(f"protocol.train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.split_index < 0:
            raise ConfigurationError(f"protocol.split_index must be >= 0, got {self.split_index}")

    def split(self, records: list[ImageRecord]) -> Split:
        """Divide ``records`` (indices into the list) into the three parts."""
        if self.split_file:
            split = self._from_file(records, Path(self.split_file))
        elif self.use_official and records and all(r.official_split for r in records):
            split = self._official(records)
        else:
            split = self._random(records)
        if self.train_fraction < 1.0:
            split = Split(self._subsample(records, split.train), split.val, split.test)
        return split

    # -- the three ways of splitting --------------------------------------------------
    def _random(self, records: list[ImageRecord]) -> Split:
        references = sorted({record.reference for record in records})
        rng = np.random.default_rng(self.seed + self.split_index)
        order = [references[i] for i in rng.permutation(len(references))]
        n_test = round(self.test_fraction * len(order))
        test_refs, train_refs = set(order[:n_test]), order[n_test:]
        n_val = round(self.val_fraction * len(train_refs))
        if self.val_fraction > 0 and n_val == 0 and len(train_refs) > 1:
            n_val = 1
        val_refs = set(train_refs[:n_val])
        return self._by_reference(records, test_refs, val_refs)

    def _official(self, records: list[ImageRecord]) -> Split:
        parts = {"train": [], "val": [], "test": []}
        for index, record in enumerate(records):
            parts[record.official_split].append(index)
        if not parts["val"] and self.val_fraction > 0:
            return self._carve_validation(records, parts["train"], parts["test"])
        if self.val_fraction == 0:  # no-validation runs train on the official val part too
            return Split(sorted(parts["train"] + parts["val"]), [], parts["test"])
        return Split(parts["train"], parts["val"], parts["test"])

    def _from_file(self, records: list[ImageRecord], path: Path) -> Split:
        if not path.is_file():
            raise DatasetError(f"protocol.split_file {path} does not exist; fix the path or set it to null")
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        header = set(rows[0]) if rows else set()
        split_column = next((c for c in ("split", "set") if c in header), None)
        name_column = next((c for c in ("image", "img_name", "dist_name", "image_name", "name") if c in header), None)
        if split_column is None or name_column is None:
            raise DatasetError(
                f"protocol.split_file {path} needs an image column (image/img_name/dist_name/image_name/name) "
                f"and a 'split' or 'set' column; found {sorted(header)}"
            )
        assignment = {}
        for row in rows:
            part = _SPLIT_ALIASES.get(row[split_column].strip().lower())
            if part is None:
                raise DatasetError(f"{path}: unknown split {row[split_column]!r}; use train/val/test")
            assignment[Path(row[name_column]).name] = part
        parts = {"train": [], "val": [], "test": []}
        unassigned = []
        for index, record in enumerate(records):
            part = assignment.get(record.path.name)
            (parts[part] if part else unassigned).append(index)
        if unassigned:
            raise DatasetError(
                f"{path} assigns no split to {len(unassigned)} image(s), e.g. {records[unassigned[0]].path.name}; "
                "is it the split file of this dataset?"
            )
        if not parts["val"] and self.val_fraction > 0:
            return self._carve_validation(records, parts["train"], parts["test"])
        return Split(parts["train"], parts["val"], parts["test"])

    # -- helpers ----------------------------------------------------------------------
    def _carve_validation(self, records: list[ImageRecord], train: list[int], test: list[int]) -> Split:
        references = sorted({records[i].reference for i in train})
        rng = np.random.default_rng(self.seed + self.split_index)
        n_val = max(1, round(self.val_fraction * len(references))) if len(references) > 1 else 0
        val_refs = {references[i] for i in rng.permutation(len(references))[:n_val]}
        return Split(
            [i for i in train if records[i].reference not in val_refs],
            [i for i in train if records[i].reference in val_refs],
            test,
        )

    def _subsample(self, records: list[ImageRecord], train: list[int]) -> list[int]:
        references = sorted({records[i].reference for i in train})
        rng = np.random.default_rng(self.seed + self.split_index + 1_000_003)
        n_keep = max(1, round(self.train_fraction * len(references)))
        kept = {references[i] for i in rng.permutation(len(references))[:n_keep]}
        return [i for i in train if records[i].reference in kept]

    @staticmethod
    def _by_reference(records: list[ImageRecord], test_refs: set[str], val_refs: set[str]) -> Split:
        split = Split()
        for index, record in enumerate(records):
            if record.reference in test_refs:
                split.test.append(index)
            elif record.reference in val_refs:
                split.val.append(index)
            else:
                split.train.append(index)
        return split
