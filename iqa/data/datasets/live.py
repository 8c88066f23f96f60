"""LIVE IQA release 2 (Sheikh et al. 2006): 29 references, 5 distortions, 779 images.

Layout: ``databaserelease2/dmos.mat`` (``dmos``, ``orgs``), ``refnames_all.mat``
(``refnames_all``) and the folders ``jp2k`` (227 images), ``jpeg`` (233), ``wn`` (174),
``gblur`` (174), ``fastfading`` (174) holding ``img1.bmp`` … in the order of ``dmos``.
Entries with ``orgs == 1`` are the undistorted references and are skipped.
DMOS in [0, 100], lower is better.
"""

from __future__ import annotations

import numpy as np

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord

FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))


@register_dataset
class LIVE(DatasetDescription):
    name = "live"
    default_folder = "databaserelease2"
    mos_range = (0.0, 100.0)
    higher_is_better = False
    synthetic_distortions = True

    def read_official(self) -> list[ImageRecord]:
        dmos = self._read_mat("dmos.mat", "dmos")
        originals = self._read_mat("dmos.mat", "orgs")
        references = [str(np.asarray(n).squeeze()) for n in self._read_mat("refnames_all.mat", "refnames_all")]
        entries = [(folder, i) for folder, count in FOLDERS for i in range(1, count + 1)]
        if not len(dmos) == len(originals) == len(references) == len(entries):
            raise DatasetError(f"live: {self.root / 'dmos.mat'} and refnames_all.mat must list {len(entries)} images")
        return [
            ImageRecord(self.root / folder / f"img{i}.bmp", float(score), reference.rsplit(".", 1)[0], folder)
            for (folder, i), score, original, reference in zip(entries, dmos, originals, references)
            if not original
        ]
