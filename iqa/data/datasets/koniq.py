"""KonIQ-10k (Hosu et al., IEEE TIP 2020): 10,073 in-the-wild images.

Layout: ``koniq10k/koniq10k_scores_and_distributions.csv`` (``image_name, c1..c5, c_total,
MOS, SD, MOS_zscore``) and the images in ``koniq10k/512x384/`` (or ``1024x768/`` when
``512x384/`` is absent). The label is ``MOS_zscore`` (0–100, higher is better): the
scale HyperIQA, DEIQT and most papers train on and report, and the ``MOS`` column of the
GitHub ``koniq10k_distributions_sets.csv``. The ``MOS`` column of the scores file is the
raw 1–5 mean, which LoDa's official code uses; the two agree closely but not exactly in
rank.

The official split (7,058 training / 1,000 validation / 2,015 test images) is the ``set``
column of ``koniq10k_distributions_sets.csv`` (github.com/subpic/koniq, ``metadata/``),
read when that file is in the folder.
"""

from __future__ import annotations

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord

LABELS = "koniq10k_scores_and_distributions.csv"
SPLIT_FILE = "koniq10k_distributions_sets.csv"
SPLIT_NAMES = {"training": "train", "validation": "val", "test": "test"}


@register_dataset
class KonIQ10k(DatasetDescription):
    name = "koniq"
    default_folder = "koniq10k"
    mos_range = (0.0, 100.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        labels, rows = self._read_csv(LABELS, {"image_name", "MOS_zscore"})
        folder = self.root / "512x384"
        if not folder.is_dir() and (self.root / "1024x768").is_dir():
            folder = self.root / "1024x768"
        split = self._official_split() if (self.root / SPLIT_FILE).is_file() else {}
        missing = [row["image_name"] for row in rows if row["image_name"] not in split] if split else []
        if missing:
            raise DatasetError(
                f"koniq: {self.root / SPLIT_FILE} assigns no set to {len(missing)} image(s) of {labels.name}, "
                f"e.g. {missing[0]}; use the official file or remove it for random splits"
            )
        return [
            ImageRecord(
                folder / row["image_name"],
                self._parse_mos(row["MOS_zscore"], labels),
                row["image_name"],
                official_split=split.get(row["image_name"]),
            )
            for row in rows
        ]

    def _official_split(self) -> dict[str, str]:
        path, rows = self._read_csv(SPLIT_FILE, {"image_name", "set"})
        unknown = sorted({row["set"] for row in rows} - set(SPLIT_NAMES))
        if unknown:
            raise DatasetError(f"koniq: {path} has unknown set(s) {unknown}; expected training/validation/test")
        return {row["image_name"]: SPLIT_NAMES[row["set"]] for row in rows}
