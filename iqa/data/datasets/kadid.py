"""KADID-10k (Lin, Hosu & Saupe, QoMEX 2019): 81 references × 25 distortions × 5 levels.

Layout: ``kadid10k/dmos.csv`` (``dist_img,ref_img,dmos,var``) and ``kadid10k/images/``
(distorted and reference PNGs). Despite its name, ``dmos`` is a mean opinion score in
[1, 5] where higher is better (the dataset's web page: "high value of DMOS corresponds
to higher visual quality"). ``I01_03_05.png`` is reference ``I01``, distortion type 03,
level 05; the type names follow Table 1 of the paper.
"""

from __future__ import annotations

from pathlib import Path

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord

DISTORTION_TYPES = (  # index 0 is type 01
    "gaussian_blur", "lens_blur", "motion_blur",
    "color_diffusion", "color_shift", "color_quantization", "color_saturation_hsv", "color_saturation_lab",
    "jpeg2000", "jpeg",
    "white_noise", "white_noise_color_component", "impulse_noise", "multiplicative_noise", "denoise",
    "brighten", "darken", "mean_shift",
    "jitter", "non_eccentricity_patch", "pixelate", "quantization", "color_block",
    "high_sharpen", "contrast_change",
)


@register_dataset
class KADID10k(DatasetDescription):
    name = "kadid"
    default_folder = "kadid10k"
    mos_range = (1.0, 5.0)
    higher_is_better = True
    synthetic_distortions = True

    def read_official(self) -> list[ImageRecord]:
        labels, rows = self._read_csv("dmos.csv", {"dist_img", "ref_img", "dmos"})
        return [
            ImageRecord(
                self.root / "images" / row["dist_img"],
                self._parse_mos(row["dmos"], labels),
                Path(row["ref_img"]).stem,
                self._distortion(row["dist_img"], labels),
            )
            for row in rows
        ]

    def _distortion(self, image: str, labels: Path) -> str:
        fields = Path(image).stem.split("_")
        if len(fields) != 3 or not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(DISTORTION_TYPES):
            raise DatasetError(f"kadid: {labels} lists {image!r}, not a KADID name like I01_03_05.png")
        return DISTORTION_TYPES[int(fields[1]) - 1]
