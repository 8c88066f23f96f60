"""LIVE In the Wild Image Quality Challenge (Ghadiyaram & Bovik 2016): 1,162 images.

Layout: ``ChallengeDB_release/Data/AllMOS_release.mat`` (``AllMOS_release``),
``Data/AllImages_release.mat`` (``AllImages_release``) and ``Images/``. The first 7
entries are the training images shown to subjects (``Images/trainingImages``) and are
skipped, as in every paper. MOS in [0, 100], higher is better.
"""

from __future__ import annotations

import numpy as np
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
        scores = self._read_mat("Data/AllMOS_release.mat", "AllMOS_release")
        names = [str(np.asarray(n).squeeze()) for n in self._read_mat("Data/AllImages_release.mat", "AllImages_release")]
        if len(names) != len(scores):
            raise DatasetError(f"livec: {len(names)} image names but {len(scores)} scores under {self.root / 'Data'}")
        return [
            ImageRecord(self.root / "Images" / name, float(score), name)
            for name, score in list(zip(names, scores))[N_TRAINING_IMAGES:]
        ]
