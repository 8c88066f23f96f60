"""TID2013 (Ponomarenko et al., Signal Processing: Image Communication 2015): 25 × 24 × 5 images.

Layout: ``tid2013/mos_with_names.txt`` (lines ``<mos> <file name>``, e.g.
``5.51429 i01_01_1.bmp``) and ``tid2013/distorted_images/``. MOS in [0, 9], higher is
better. ``i01_08_3.bmp`` is reference ``I01``, distortion type 08, level 3; the type
names follow Table 1 of the paper. File names are matched case-insensitively, since the
case of a few names differs between the label file and the archive.
"""

from __future__ import annotations

from pathlib import Path

from iqa.data.datasets.base import DatasetDescription, DatasetError, register_dataset
from iqa.data.records import ImageRecord

DISTORTION_TYPES = (  # index 0 is type 01
    "additive_gaussian_noise", "color_noise", "spatially_correlated_noise", "masked_noise",
    "high_frequency_noise", "impulse_noise", "quantization_noise", "gaussian_blur", "denoising",
    "jpeg", "jpeg2000", "jpeg_transmission_errors", "jpeg2000_transmission_errors",
    "non_eccentricity_pattern_noise", "local_block_distortions", "mean_shift", "contrast_change",
    "color_saturation_change", "multiplicative_gaussian_noise", "comfort_noise",
    "lossy_compression_of_noisy_images", "color_quantization_with_dither", "chromatic_aberrations",
    "sparse_sampling_and_reconstruction",
)


@register_dataset
class TID2013(DatasetDescription):
    name = "tid2013"
    default_folder = "tid2013"
    mos_range = (0.0, 9.0)
    higher_is_better = True
    synthetic_distortions = True

    def read_official(self) -> list[ImageRecord]:
        labels = self._require_file("mos_with_names.txt")
        folder = self.root / "distorted_images"
        on_disk = {path.name.lower(): path for path in folder.iterdir()} if folder.is_dir() else {}
        records = []
        for number, line in enumerate(labels.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise DatasetError(f"tid2013: {labels} line {number} is not '<mos> <file name>': {line!r}")
            mos, name = fields
            reference, distortion = self._parse_name(name, labels)
            path = on_disk.get(name.lower(), folder / name)
            records.append(ImageRecord(path, self._parse_mos(mos, labels), reference, distortion))
        return records

    def _parse_name(self, name: str, labels: Path) -> tuple[str, str]:
        fields = Path(name).stem.split("_")
        if len(fields) != 3 or not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(DISTORTION_TYPES):
            raise DatasetError(f"tid2013: {labels} lists {name!r}, not a TID2013 name like i01_08_3.bmp")
        return fields[0].upper(), DISTORTION_TYPES[int(fields[1]) - 1]
