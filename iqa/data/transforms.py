"""Multi-crop sampling: every dataset item holds *all* crops of one image.

Keeping an image's crops in one item means a sample padded in by a distributed sampler
duplicates whole images (removed by image id in the metrics), never single crops that
would leak into an image's mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from iqa.errors import ConfigurationError


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.uint8, order="C")).permute(2, 0, 1)


def upscale_to_fit(image: torch.Tensor, side: int) -> torch.Tensor:
    """Resize a (3, H, W) uint8 image up so both sides are at least ``side``."""
    height, width = image.shape[-2:]
    if min(height, width) >= side:
        return image
    scale = side / min(height, width)
    size = (max(side, round(height * scale)), max(side, round(width * scale)))
    resized = F.interpolate(image[None].float(), size=size, mode="bicubic", align_corners=False)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


class MultiCrop:
    """Sample ``n_crops`` square crops of ``crop_size`` from an (H, W, 3) uint8 image.

    Args:
        crop_size: crop side; ``None`` keeps the whole image (then ``n_crops`` must be 1).
        n_crops: crops per image (training: several per step as in DEIQT/QMamba;
            testing: averaged per image, 10 by default).
        train: random positions and flips, drawn from the ``generator`` passed per sample
            (:mod:`iqa.data.sampling`: a function of seed, epoch and index); at test time
            positions are drawn from a generator seeded by the image id, so every run and
            every rank sees the same crops.
        hflip, vflip: random flips (training only).
        mode: ``"random"`` positions; ``"ten"`` — the four corners and the centre, each
            also mirrored (torchvision's TenCrop; needs ``n_crops=10``, testing only); or
            ``"center"`` — the central crop (``n_crops=1``; with random flips in training),
            as CLIP-style preprocessing after ``data.resize_shorter`` does.
    """

    def __init__(
        self,
        crop_size: int | None,
        n_crops: int,
        train: bool,
        hflip: bool = True,
        vflip: bool = False,
        mode: str = "random",
    ) -> None:
        stage = "train" if train else "test"
        if mode not in ("random", "ten", "center") or (mode == "ten" and train):
            raise ConfigurationError(f"data.{stage}_crop_mode={mode!r}: choose random, center"
                                     + ("" if train else " or ten"))
        if mode == "center" and n_crops != 1:
            raise ConfigurationError(f"data.{stage}_crop_mode=center takes one crop per image: "
                                     f"set data.n_{stage}_crops=1 (it is {n_crops})")
        if mode == "ten" and n_crops != 10:
            raise ConfigurationError(f"data.test_crop_mode='ten' needs data.n_test_crops=10, got {n_crops}")
        if crop_size is None and n_crops != 1:
            raise ConfigurationError("data.crop_size=null (whole images) needs one crop per image")
        self.crop_size = crop_size
        self.n_crops = n_crops
        self.train = train
        self.hflip = hflip
        self.vflip = vflip
        self.mode = mode

    def __call__(self, image: np.ndarray, image_id: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return the crops as a (n_crops, 3, crop, crop) uint8 tensor.

        Training draws from ``generator`` (torch's global generator when ``None``)."""
        chw = _to_chw(image)
        if self.crop_size is None:
            return chw[None]
        chw = upscale_to_fit(chw, self.crop_size)
        if self.mode == "ten" and not self.train:
            return self._ten_crop(chw)
        if self.mode == "center":
            crops = self._centre_crop(chw)[None]
            return self._random_flips(crops, generator) if self.train else crops
        if not self.train:
            generator = torch.Generator().manual_seed(int(image_id))
        height, width = chw.shape[-2:]
        tops = torch.randint(0, height - self.crop_size + 1, (self.n_crops,), generator=generator)
        lefts = torch.randint(0, width - self.crop_size + 1, (self.n_crops,), generator=generator)
        crops = torch.stack([self._crop(chw, int(t), int(l)) for t, l in zip(tops, lefts)])
        if self.train:
            crops = self._random_flips(crops, generator)
        return crops

    def _crop(self, image: torch.Tensor, top: int, left: int) -> torch.Tensor:
        return image[:, top : top + self.crop_size, left : left + self.crop_size]

    def _centre_crop(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        return self._crop(image, (height - self.crop_size) // 2, (width - self.crop_size) // 2)

    def _ten_crop(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        size = self.crop_size
        corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size)]
        crops = torch.stack([self._crop(image, top, left) for top, left in corners] + [self._centre_crop(image)])
        return torch.cat([crops, crops.flip(-1)])

    def _random_flips(self, crops: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.hflip:
            flip = torch.rand(len(crops), generator=generator) < 0.5
            crops[flip] = crops[flip].flip(-1)
        if self.vflip:
            flip = torch.rand(len(crops), generator=generator) < 0.5
            crops[flip] = crops[flip].flip(-2)
        return crops
