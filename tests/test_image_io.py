"""Decoding real files of every awkward kind, resizing, the on-disk cache, corrupt images in a
dataset, and the generated synthetic set (merged from the former tests/test_images.py)."""

from __future__ import annotations

import hashlib
import multiprocessing
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from iqa.data import image_io
from iqa.data.dataset import IQAImageDataset, collate_skipping_corrupt
from iqa.data.datasets import build_description
from iqa.data.image_io import CorruptImageError, ImageCache, read_rgb, resize_shorter
from iqa.data.records import ImageRecord
from iqa.data.transforms import MultiCrop

RGB = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)


def write_png16(path, samples: np.ndarray) -> None:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA), written by hand: Pillow cannot write 48-bit PNGs."""
    height, width, channels = samples.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def decoded(tmp_path, image: Image.Image, name: str = "x.png", **save) -> np.ndarray:
    path = tmp_path / name
    image.save(path, **save)
    array = read_rgb(path)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    return array


# -- modes -----------------------------------------------------------------------------
def test_rgb_png_is_returned_exactly(tmp_path):
    assert np.array_equal(decoded(tmp_path, Image.fromarray(RGB)), RGB)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = RGB[..., 0]
    assert np.array_equal(decoded(tmp_path, Image.fromarray(gray)), np.repeat(gray[..., None], 3, axis=2))


def test_palette_image_gives_its_colours(tmp_path):
    palette = Image.fromarray(RGB).quantize(colors=16)
    assert np.array_equal(decoded(tmp_path, palette), np.asarray(palette.convert("RGB")))


def test_palette_transparency_is_composited_on_white(tmp_path):
    palette = Image.fromarray(RGB).quantize(colors=16)
    transparent_index = int(np.asarray(palette)[0, 0])
    array = decoded(tmp_path, palette, transparency=transparent_index)
    assert (array[np.asarray(palette) == transparent_index] == 255).all()


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 20, 0)
    rgba[0, :, 3] = (0, 255, 128)  # transparent, opaque, half
    array = decoded(tmp_path, Image.fromarray(rgba))
    assert array[0, 0].tolist() == [255, 255, 255] and array[0, 1].tolist() == [200, 20, 0]
    assert np.abs(array[0, 2].astype(int) - [227, 137, 127]).max() <= 1  # 200·½ + 255·½, …
    gray_alpha = Image.fromarray(rgba).convert("LA")
    assert decoded(tmp_path, gray_alpha, "la.png")[0, 0].tolist() == [255, 255, 255]


def test_cmyk_jpeg_is_converted(tmp_path):
    smooth = np.zeros((16, 16, 3), np.uint8)
    smooth[..., 0], smooth[..., 2] = 210, 40
    array = decoded(tmp_path, Image.fromarray(smooth).convert("CMYK"), "cmyk.jpg", quality=95)
    assert np.abs(array.astype(int) - smooth).max() <= 3


def test_16_bit_gray_png_is_scaled_not_clipped(tmp_path):
    samples = np.array([[0, 257 * 128, 65535, 1000]], np.uint16)
    Image.fromarray(samples).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    array = read_rgb(tmp_path / "g16.png")
    assert array[0, :, 0].tolist() == [0, 128, 255, 4] and (array == array[..., :1]).all()
    write_png16(tmp_path / "byhand.png", samples[..., None])
    assert np.array_equal(read_rgb(tmp_path / "byhand.png"), array)


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_png_is_scaled_not_clipped(tmp_path, channels):
    samples = np.random.default_rng(1).integers(0, 65536, (5, 7, channels), dtype=np.uint16)
    samples[0, 0], samples[0, 1] = 0, 65535
    samples[..., 3:] = 65535  # opaque
    write_png16(tmp_path / "c16.png", samples)
    array = read_rgb(tmp_path / "c16.png")
    assert array.shape == (5, 7, 3)
    assert np.abs(array.astype(int) - np.round(samples[..., :3] / 257)).max() <= 1
    assert array[0, 0].tolist() == [0, 0, 0] and array[0, 1].tolist() == [255, 255, 255]


def test_32_bit_integer_and_float_images_are_scaled(tmp_path):
    Image.fromarray(np.array([[0, 30000, 65535]], np.int32)).save(tmp_path / "i.tif")
    assert read_rgb(tmp_path / "i.tif")[0, :, 0].tolist() == [0, 117, 255]
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "f.tif")
    assert read_rgb(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 128, 255]
    Image.fromarray(np.array([[0.0, 100.0, 255.0]], np.float32)).save(tmp_path / "f255.tif")
    assert read_rgb(tmp_path / "f255.tif")[0, :, 0].tolist() == [0, 100, 255]


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:16, :16] = (255, 0, 0)  # red top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    array = decoded(tmp_path, Image.fromarray(stored), "rotated.jpg", exif=exif, quality=95)
    assert array.shape == (60, 40, 3)
    assert array[2, -3, 0] > 200 and array[-3, 2, 0] < 50  # the red corner is now top-right


# -- failures --------------------------------------------------------------------------
def truncated_jpeg(path):
    Image.fromarray(RGB).resize((64, 64)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:300])


def truncated_png(path):
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize("make", [
    truncated_jpeg,
    truncated_png,
    lambda path: path.write_bytes(np.random.default_rng(3).bytes(5000)),
    lambda path: path.write_bytes(b"not an image at all"),
    lambda path: path.write_bytes(b""),
], ids=["truncated-jpeg", "truncated-png", "random-bytes", "text", "empty"])
def test_corrupt_files_raise_naming_the_file_and_the_fix(tmp_path, make):
    path = tmp_path / "broken_42.jpg"
    make(path)
    with pytest.raises(CorruptImageError, match=r"broken_42\.jpg.*data\.on_corrupt=skip") as caught:
        read_rgb(path)
    assert isinstance(caught.value, ValueError) and caught.value.path == path
    assert "remove" in str(caught.value)


def test_corrupt_image_error_survives_pickling(tmp_path):
    error = CorruptImageError(tmp_path / "a.png", "truncated")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is CorruptImageError and copy.path == error.path and str(copy) == str(error)


def test_a_missing_file_is_not_called_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "absent.png")


def _dataset(tmp_path, on_corrupt):
    Image.fromarray(RGB).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    description = build_description("synthetic", tmp_path)
    records = [ImageRecord(tmp_path / "good.png", 50.0, "g"), ImageRecord(tmp_path / "bad.png", 40.0, "b")]
    return IQAImageDataset(description, records, [0, 1], MultiCrop(8, 2, train=False), on_corrupt=on_corrupt)


def test_corrupt_image_in_a_dataset_fails_or_is_skipped_with_a_warning(tmp_path, caplog):
    with pytest.raises(CorruptImageError, match="bad.png"):
        _dataset(tmp_path, "fail")[1]
    dataset = _dataset(tmp_path, "skip")
    batch = collate_skipping_corrupt([dataset[0], dataset[1]])
    assert batch["images"].shape == (1, 2, 3, 8, 8) and torch.equal(batch["image_id"], torch.tensor([0]))
    assert "bad.png" in caplog.text


# -- resizing --------------------------------------------------------------------------
def test_resize_shorter_keeps_the_aspect_and_the_type():
    image = np.zeros((300, 450, 3), np.uint8)
    assert resize_shorter(image, 100).shape == (100, 150, 3)
    assert resize_shorter(image[:, :200], 100).shape == (150, 100, 3)
    assert resize_shorter(image, 300) is image
    assert resize_shorter(image, 600).dtype == np.uint8


def test_resize_shorter_is_antialiased():
    checkerboard = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    small = resize_shorter(np.repeat(checkerboard[..., None], 3, axis=2), 16)
    assert np.abs(small.astype(int) - 128).max() <= 3  # averaged to gray, not aliased to black/white


# -- cache -----------------------------------------------------------------------------
def test_cache_hit_returns_the_same_array_without_decoding(tmp_path, monkeypatch):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    cache = ImageCache(tmp_path / "cache")
    first = cache.load(tmp_path / "a.png")
    assert np.array_equal(first, RGB) and len(list((tmp_path / "cache").rglob("*.npy"))) == 1

    monkeypatch.setattr(image_io, "read_rgb", lambda path: pytest.fail("decoded although cached"))
    second = cache.load(tmp_path / "a.png")
    assert np.array_equal(second, first) and second.dtype == np.uint8


def test_cache_keys_on_resize_and_on_file_changes(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(RGB).save(path)
    cache = ImageCache(tmp_path / "cache")
    assert cache.load(path, resize=20).shape == (24, 20, 3)
    assert cache.load(path).shape == (12, 10, 3)
    Image.fromarray(RGB[::-1]).save(path)  # edited in place
    assert np.array_equal(cache.load(path), RGB[::-1])


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    cache = ImageCache(tmp_path / "cache")
    cache.load(tmp_path / "a.png")
    entry = cache.entry(tmp_path / "a.png")
    entry.write_bytes(entry.read_bytes()[:40])
    assert np.array_equal(cache.load(tmp_path / "a.png"), RGB)


def _load_many(args) -> list[bytes]:
    cache_dir, paths, start = args
    start.wait()
    cache = ImageCache(cache_dir)
    return [cache.load(path, 48).tobytes() for _ in range(5) for path in paths]


def test_cache_is_safe_for_concurrent_writers(tmp_path):
    paths = []
    for index in range(4):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (120, 90, 3), dtype=np.uint8)).save(paths[-1])
    expected = [resize_shorter(read_rgb(path), 48).tobytes() for path in paths] * 5
    context = multiprocessing.get_context("fork")
    workers = 4
    start = context.Manager().Barrier(workers)
    with context.Pool(workers) as pool:
        results = pool.map(_load_many, [(tmp_path / "cache", paths, start)] * workers)
    assert all(result == expected for result in results)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(paths)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


# -- the synthetic set -----------------------------------------------------------------
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
