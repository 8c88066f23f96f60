"""LIVE In the Wild Image Quality Challenge (Ghadiyaram & Bovik, IEEE TIP 2016): 1,162 images.

Layout: ``ChallengeDB_release/Data/AllImages_release.mat`` (``AllImages_release``, 1,169
names), ``Data/AllMOS_release.mat`` (``AllMOS_release``, the MOS in the same order) and
``Images/``. The first 7 entries are the training images shown to the subjects before
the study (``Images/trainingImages/``) and are skipped, as in the papers (pyiqa, HyperIQA,
DEIQT: entries 7…1168). MOS in [0, 100], higher is better.
"""

from __future__ import annotations

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord

N_TRAINING_IMAGES = 7


@register_dataset
class LIVEChallenge(DatasetDescription):
    name = "livec"
    default_folder = "ChallengeDB_release"
    mos_range = (0.0, 100.0)
    higher_is_better = True

    def read_official(self) -> list[ImageRecord]:
        names = self._read_mat_strings("Data/AllImages_release.mat", "AllImages_release")
        scores = self._read_mat("Data/AllMOS_release.mat", "AllMOS_release").reshape(-1)
        if len(names) != len(scores):
            raise DatasetError(
                f"livec: {len(names)} image names but {len(scores)} scores under {self.root / 'Data'}; "
                "are they the official release files?"
            )
        return [
            ImageRecord(self.root / "Images" / name, float(score), name)
            for name, score in list(zip(names, scores))[N_TRAINING_IMAGES:]
        ]
