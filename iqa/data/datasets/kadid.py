"""KADID-10k (Lin et al. 2019): 81 references × 25 distortions × 5 levels.

Layout: ``kadid10k/dmos.csv`` (dist_img, ref_img, dmos, var) + ``kadid10k/images/``.
Despite its name, KADID's ``dmos`` is a mean opinion score in [1, 5], higher is better.
The distortion type is the middle field of ``I01_03_05.png``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from iqa.data.datasets.base import DatasetDescription, register_dataset
from iqa.data.records import ImageRecord

KADID_TYPES = (
    "gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift", "color_quantization",
    "color_saturation_1", "color_saturation_2", "jpeg2000", "jpeg", "white_noise", "white_noise_color",
    "impulse_noise", "multiplicative_noise", "denoise", "brighten", "darken", "mean_shift", "jitter",
    "non_eccentricity_patch", "pixelate", "quantization", "color_block", "high_sharpen", "contrast_change",
)


@register_dataset
class KADID10k(DatasetDescription):
    name = "kadid"
    default_folder = "kadid10k"
    mos_range = (1.0, 5.0)
    higher_is_better = True
    synthetic_distortions = True

    def read_official(self) -> list[ImageRecord]:
        labels = self._require_file("dmos.csv")
        with open(labels, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self._require_columns(labels, {"dist_img", "ref_img", "dmos"}, rows[0] if rows else [])
        return [
            ImageRecord(
                self.root / "images" / row["dist_img"],
                self._parse_mos(row["dmos"], labels),
                Path(row["ref_img"]).stem,
                KADID_TYPES[int(Path(row["dist_img"]).stem.split("_")[1]) - 1],
            )
            for row in rows
        ]
