"""One labelled image, as every dataset description returns it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageRecord:
    """A labelled image of a benchmark.

    Attributes:
        path: absolute path of the image file.
        mos: the dataset's own opinion score (MOS or DMOS, in its own range).
        reference: content id used to split by content. Distorted versions of one
            pristine image share it (KADID, LIVE, CSIQ, TID2013); for authentic
            datasets each image is its own reference.
        distortion: distortion type name where the dataset defines one, else ``None``.
        official_split: ``"train"``, ``"val"`` or ``"test"`` where the dataset ships an
            official split (KonIQ-10k, FLIVE), else ``None``.
    """

    path: Path
    mos: float
    reference: str
    distortion: str | None = None
    official_split: str | None = None
