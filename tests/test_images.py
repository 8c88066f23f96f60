"""Decoding real files of every awkward kind, the cache, corrupt images, the synthetic set."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from iqa.data.dataset import IQAImageDataset, collate_skipping_corrupt
from iqa.data.datasets import build_description
from iqa.data.image_io import CorruptImageError, ImageCache, read_rgb
from iqa.data.records import ImageRecord
from iqa.data.transforms import MultiCrop

RGB = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_modes_become_rgb_uint8(tmp_path, mode):
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    if mode == "I;16":
        Image.fromarray((np.arange(120).reshape(12, 10) * 500).astype(np.uint16)).save(path)
    else:
        Image.fromarray(RGB).convert(mode).save(path)
    array = read_rgb(path)
    assert array.shape == (12, 10, 3) and array.dtype == np.uint8
    if mode == "I;16":
        assert array[-1, -1, 0] == round(119 * 500 / 65535 * 255)


def test_transparent_pixels_are_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert (read_rgb(tmp_path / "clear.png") == 255).all()


@pytest.mark.parametrize("content", [b"not an image at all", None])
def test_corrupt_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.jpg"
    if content is None:  # a truncated JPEG
        Image.fromarray(RGB).resize((64, 64)).save(path, quality=90)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(CorruptImageError, match="broken.jpg.*data.on_corrupt=skip"):
        read_rgb(path)


def test_cache_returns_the_decoded_image(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    cache = ImageCache(tmp_path / "cache")
    first = cache.load(tmp_path / "a.png", resize=None)
    assert np.array_equal(first, RGB) and len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    assert np.array_equal(cache.load(tmp_path / "a.png", resize=None), RGB)
    assert cache.load(tmp_path / "a.png", resize=20).shape[:2] == (24, 20)


def _dataset(tmp_path, on_corrupt):
    Image.fromarray(RGB).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    description = build_description("synthetic", tmp_path)
    records = [ImageRecord(tmp_path / "good.png", 50.0, "g"), ImageRecord(tmp_path / "bad.png", 40.0, "b")]
    return IQAImageDataset(description, records, [0, 1], MultiCrop(8, 2, train=False), on_corrupt=on_corrupt)


def test_corrupt_image_fails_or_is_skipped_with_a_warning(tmp_path, caplog):
    with pytest.raises(CorruptImageError, match="bad.png"):
        _dataset(tmp_path, "fail")[1]
    dataset = _dataset(tmp_path, "skip")
    batch = collate_skipping_corrupt([dataset[0], dataset[1]])
    assert batch["images"].shape == (1, 2, 3, 8, 8) and torch.equal(batch["image_id"], torch.tensor([0]))
    assert "bad.png" in caplog.text


def _digest(root) -> str:
    files = [root / "synthetic" / "labels.csv", *sorted((root / "synthetic" / "images").glob("*.png"))]
    return hashlib.sha1(b"".join(path.read_bytes() for path in files)).hexdigest()


def test_synthetic_generation_is_deterministic(tmp_path, data_dir):
    records = build_description("synthetic", tmp_path).records()
    assert len(records) == 630 and len({r.reference for r in records}) == 30
    assert _digest(tmp_path) == _digest(data_dir)
    levels = {r.mos for r in records if r.distortion == "jpeg"}
    assert levels == {80.0, 60.0, 40.0, 20.0} and max(r.mos for r in records if r.distortion is None) == 100.0


def test_interrupted_generation_is_redone(tmp_path):
    (tmp_path / "synthetic" / "images").mkdir(parents=True)  # a half-made copy without VERSION
    assert len(build_description("synthetic", tmp_path).records()) == 630
