"""LIVE IQA release 2 (Sheikh, Sabir & Bovik, IEEE TIP 2006): 29 references, 779 distorted images.

Layout (the ``databaserelease2`` archive): ``dmos_realigned.mat`` (``dmos_new``, ``orgs``),
``refnames_all.mat`` (``refnames_all``) and the folders ``jp2k`` (227 entries), ``jpeg``
(233), ``wn``, ``gblur`` and ``fastfading`` (174 each) holding ``img1.bmp`` … ``img<n>.bmp``,
listed in that order by the 982 entries of the ``.mat`` files. Entries with ``orgs == 1``
are the undistorted references and are skipped, as in every paper.

The label is the realigned DMOS ``dmos_new``, as in the official code of HyperIQA, DEIQT
and LoDa (pyiqa reads the older ``dmos`` of ``dmos.mat``). Lower is better; nominally
0–100, the realigned values of the distorted images span −2.64 … 111.77, hence the range.
"""

from __future__ import annotations

from pathlib import Path

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord

FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))


@register_dataset
class LIVE(DatasetDescription):
    name = "live"
    default_folder = "databaserelease2"
    mos_range = (-3.0, 112.0)
    higher_is_better = False
    synthetic_distortions = True

    def read_official(self) -> list[ImageRecord]:
        dmos = self._read_mat("dmos_realigned.mat", "dmos_new").reshape(-1)
        originals = self._read_mat("dmos_realigned.mat", "orgs").reshape(-1)
        references = self._read_mat_strings("refnames_all.mat", "refnames_all")
        entries = [(folder, index) for folder, count in FOLDERS for index in range(1, count + 1)]
        if not len(dmos) == len(originals) == len(references) == len(entries):
            raise DatasetError(
                f"live: dmos_new, orgs and refnames_all under {self.root} must each list {len(entries)} entries "
                f"(found {len(dmos)}, {len(originals)}, {len(references)}); are they the release-2 files?"
            )
        return [
            ImageRecord(self.root / folder / f"img{index}.bmp", float(score), Path(reference).stem, folder)
            for (folder, index), score, original, reference in zip(entries, dmos, originals, references)
            if not original
        ]
