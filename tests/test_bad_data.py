"""Bad data fails fast and clearly: every listed image is checked before training (cached),
duplicate labels, decompression bombs, bad loader keys, and unreadable files in ``eval.py images=``."""

from __future__ import annotations

import csv
import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image

from iqa.data import image_check
from iqa.data.datamodule import IQADataModule
from iqa.data.dataset import IQAImageDataset
from iqa.data.datasets import DatasetError, build_description
from iqa.data.image_check import check_images
from iqa.data.image_io import CorruptImageError, read_rgb
from iqa.data.protocol import SplitProtocol
from iqa.data.records import ImageRecord
from iqa.data.transforms import MultiCrop
from iqa.experiment import evaluate, train
from iqa.scorer import Scorer
from tests.conftest import TINY_RUN, compose_config

N_REFERENCES = 10  # two images each: 20 images, split by reference


@pytest.fixture(autouse=True)
def private_check_cache(tmp_path, monkeypatch):
    """Each test gets its own image-check cache (the default lives under XDG_CACHE_HOME)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="module")
def mini_source(tmp_path_factory, data_dir) -> Path:
    """20 synthetic images (a reference and its JPEG-distorted copy, per content) and a pyiqa meta CSV."""
    root = tmp_path_factory.mktemp("mini")
    rows = []
    for record in build_description("synthetic", data_dir).records():
        if record.distortion in (None, "jpeg") and record.mos in (100.0, 20.0) and len(rows) < 2 * N_REFERENCES:
            shutil.copy(record.path, root / record.path.name)
            rows.append((f"{record.reference}.png", record.path.name, record.mos))
    write_meta(root / "meta.csv", rows)
    return root


def write_meta(path: Path, rows: list[tuple[str, str, float]]) -> None:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("ref_name", "dist_name", "mos"), *rows])


@pytest.fixture
def mini(tmp_path, mini_source) -> Path:
    """A private copy of the mini dataset, free to damage."""
    return Path(shutil.copytree(mini_source, tmp_path / "mini"))


def mini_overrides(root: Path) -> list[str]:
    return [f"data.roots.synthetic={root}", f"+data.meta_files.synthetic={root / 'meta.csv'}"]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def bomb_png(path: Path, side: int) -> Path:
    """A tiny PNG file whose header declares ``side`` x ``side`` pixels."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", side, side)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def split_of(datamodule: IQADataModule):
    description = datamodule.train_descriptions[0]
    records = description.records()
    return records, datamodule.protocol.split(records)


# -- every split is checked in setup, before training --------------------------------------
def test_corrupt_test_image_fails_in_setup_before_any_training_step(compose_train, mini):
    cfg = compose_train(*mini_overrides(mini))
    records, split = split_of(instantiate(cfg.data))
    victim = records[split.test[0]].path
    truncate(victim)
    with pytest.raises(DatasetError, match=rf"1 of 20 listed images(.|\n)*{victim.name}(.|\n)*data.on_corrupt=skip"):
        train(cfg)
    assert not list(Path(cfg.paths.output_dir).rglob("*.ckpt"))


def test_fail_reports_every_bad_file_at_once(compose_train, mini):
    cfg = compose_train(*mini_overrides(mini))
    datamodule = instantiate(cfg.data)
    records, split = split_of(datamodule)
    bad = [records[split.train[0]].path, records[split.val[0]].path, records[split.test[0]].path]
    truncate(bad[0])
    bad[1].write_bytes(b"not an image")
    bad[2].write_bytes(b"")
    with pytest.raises(DatasetError, match="3 of 20 listed images cannot be used") as caught:
        datamodule.setup("fit")
    assert all(str(path) in str(caught.value) for path in bad)


def test_skip_leaves_bad_files_out_up_front_with_one_warning(compose_train, mini, caplog):
    cfg = compose_train(*mini_overrides(mini), "data.on_corrupt=skip")
    datamodule = instantiate(cfg.data)
    records, split = split_of(datamodule)
    victim = records[split.test[0]].path
    truncate(victim)
    with caplog.at_level(logging.WARNING):
        datamodule.setup("fit")
    warnings = [r for r in caplog.records if "leaving out" in r.getMessage()]
    assert len(warnings) == 1 and str(victim) in warnings[0].getMessage()
    test_set = datamodule.test_sets["synthetic"]
    assert victim not in [r.path for r in test_set.records] and len(test_set) == len(split.test) - 1
    assert len(datamodule.train_set) == datamodule.repeat * len(split.train)  # other splits untouched
    assert records[split.test[0]].path == victim and split.test[0] not in test_set.ids  # ids keep their meaning


# -- the check itself --------------------------------------------------------------------------
def test_check_finds_truncated_and_non_images_and_accepts_trailing_bytes(tmp_path):
    rng = np.random.default_rng(0)
    pixels = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    for name in ("ok.jpg", "cut.jpg", "ok.png", "cut.png", "ok.bmp", "cut.bmp", "ok.webp", "padded.jpg"):
        pixels.save(tmp_path / name)
    for name in ("cut.jpg", "cut.png", "cut.bmp"):
        truncate(tmp_path / name)
    padded = tmp_path / "padded.jpg"  # bytes after the end-of-image marker: decoded in full, and fine
    padded.write_bytes(padded.read_bytes() + b"\0" * 5000)
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    paths = sorted(tmp_path.glob("*.*")) + [tmp_path / "absent.png"]
    problems = check_images(paths, cache_dir=tmp_path / "cache")
    assert set(problems) == {tmp_path / n for n in ("cut.jpg", "cut.png", "cut.bmp", "text.jpg", "empty.png",
                                                     "absent.png")}
    assert problems[tmp_path / "absent.png"] == "file not found"


def test_check_results_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "b.png")
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    assert check_images(paths, cache_dir=tmp_path / "cache") == {}
    opened = []
    real_open = image_check.Image.open
    monkeypatch.setattr(image_check.Image, "open", lambda path, *a: opened.append(Path(path)) or real_open(path, *a))
    assert check_images(paths, cache_dir=tmp_path / "cache") == {} and opened == []  # only stat'ed
    truncate(tmp_path / "b.png")  # new size and mtime: checked again
    assert set(check_images(paths, cache_dir=tmp_path / "cache")) == {tmp_path / "b.png"}
    assert opened == [tmp_path / "b.png"]
    assert not list((tmp_path / "cache").glob("*.tmp"))  # written atomically, no leftovers


def test_unwritable_cache_only_costs_time(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    (tmp_path / "file").write_text("")  # a file where the cache folder should be
    assert check_images([tmp_path / "a.png"], cache_dir=tmp_path / "file" / "cache") == {}


# -- pixel limit ---------------------------------------------------------------------------
@pytest.mark.parametrize("side", [10_000, 20_000], ids=["above-pillow-limit", "above-twice-pillow-limit"])
def test_decompression_bomb_is_a_corrupt_image_naming_the_path(tmp_path, side):
    bomb = bomb_png(tmp_path / "bomb.png", side)
    with pytest.raises(CorruptImageError, match=r"bomb\.png.*data\.max_pixels") as caught:
        read_rgb(bomb)
    assert caught.value.path == bomb
    assert "data.max_pixels" in check_images([bomb], cache_dir=tmp_path / "cache")[bomb]
    description = build_description("synthetic", tmp_path)
    dataset = IQAImageDataset(description, [ImageRecord(bomb, 50.0, "b")], [0], MultiCrop(8, 1, train=False),
                              on_corrupt="skip")
    assert dataset[0] is None  # data.on_corrupt=skip now skips it when decoding, too


def test_max_pixels_replaces_pillows_limit(tmp_path, monkeypatch):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")  # 256 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse it
    assert read_rgb(tmp_path / "a.png", max_pixels=None).shape == (16, 16, 3)
    assert read_rgb(tmp_path / "a.png", max_pixels=1000).shape == (16, 16, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored
    with pytest.raises(CorruptImageError, match=r"16x16 is 256 pixels, more than data.max_pixels=200"):
        read_rgb(tmp_path / "a.png", max_pixels=200)


@pytest.mark.parametrize("on_corrupt", ["fail", "skip"])
def test_setup_applies_data_max_pixels(compose_train, mini, on_corrupt, caplog):
    cfg = compose_train(*mini_overrides(mini), "data.max_pixels=1000", f"data.on_corrupt={on_corrupt}")
    datamodule = instantiate(cfg.data)
    if on_corrupt == "fail":
        with pytest.raises(DatasetError, match=r"20 of 20 listed images(.|\n)*more than data.max_pixels=1000"):
            datamodule.setup("fit")
        return
    with caplog.at_level(logging.WARNING):
        datamodule.setup("fit")
    assert "leaving out 20 of 20" in caplog.text and not datamodule.test_sets["synthetic"].records


# -- duplicate labels ----------------------------------------------------------------------
def test_duplicate_rows_with_different_scores_name_both(mini):
    write_meta(mini / "meta.csv", [("a.png", mini_image(mini), 40.0), ("b.png", "x.png", 20.0),
                                   ("a.png", mini_image(mini), 60.0)])
    Image.new("RGB", (8, 8)).save(mini / "x.png")
    description = type(build_description("synthetic", mini))(mini, meta_file=mini / "meta.csv")
    with pytest.raises(DatasetError, match=r"two different scores in .*meta\.csv: row 1 .*score 40\.0.*row 3 .*"
                                           r"score 60\.0"):
        description.records()


def test_identical_duplicate_rows_are_kept_once_with_a_warning(mini, caplog):
    name = mini_image(mini)
    write_meta(mini / "meta.csv", [("a.png", name, 40.0), ("a.png", f"./{name}", 40.0)])
    description = type(build_description("synthetic", mini))(mini, meta_file=mini / "meta.csv")
    with caplog.at_level(logging.WARNING):
        records = description.records()
    assert len(records) == 1 and "listed twice with the same score" in caplog.text


def mini_image(root: Path) -> str:
    return sorted(p.name for p in root.glob("*.png"))[0]


# -- loader keys ---------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [
    ("batch_size", 0), ("eval_batch_size", 0), ("num_workers", -2), ("crop_size", 0),
    ("n_train_crops", 0), ("n_test_crops", 0), ("max_pixels", 0), ("on_corrupt", "ignore"),
])
def test_bad_loader_keys_are_named_with_the_allowed_values(key, value, tmp_path):
    kwargs = {"datasets": ["synthetic"], "data_dir": str(tmp_path), "protocol": SplitProtocol(), key: value}
    with pytest.raises(DatasetError, match=rf"data\.{key} must be .*; got {value!r}"):
        IQADataModule(**kwargs)


def test_eval_batch_size_null_means_the_training_batch_size(compose_train):
    cfg = compose_train("data.eval_batch_size=null", "data.batch_size=5")
    assert instantiate(cfg.data).eval_batch_size == 5
    with pytest.raises(Exception, match=r"data\.eval_batch_size must be .*or null for data\.batch_size; got 0"):
        instantiate(compose_train("data.eval_batch_size=0").data)


# -- eval.py images= -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mini_source) -> Path:
    """A checkpoint from one short real run on the mini dataset."""
    run_dir = tmp_path_factory.mktemp("run")
    overrides = TINY_RUN + mini_overrides(mini_source) + ["trainer.limit_train_batches=1",
                                                          "trainer.limit_val_batches=1"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(run_dir / "xdg"))  # this module-scoped run's own check cache
        train(compose_config("train", overrides, run_dir, mini_source.parent))
    return run_dir / "checkpoints" / "last.ckpt"


def test_eval_images_scores_every_readable_image_and_names_the_rest(checkpoint, mini_source, tmp_path, caplog):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in sorted(p.name for p in mini_source.glob("*.png"))[:2]:
        shutil.copy(mini_source / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"not an image")
    bomb_png(folder / "huge.png", 20_000)
    cfg = compose_config("eval", [f"ckpt_path={checkpoint}", f"images={folder}"], tmp_path / "eval", tmp_path)
    with caplog.at_level(logging.WARNING):
        csv_path = evaluate(cfg)
    with open(csv_path, newline="") as handle:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(handle)}
    assert len(rows) == 4 and list(next(iter(rows.values()))) == ["path", "score", "status"]
    assert sum(row["status"] == "ok" and 0 <= float(row["score"]) <= 1.5 for row in rows.values()) == 2
    assert rows["broken.jpg"]["score"] == "" and "cannot identify" in rows["broken.jpg"]["status"]
    assert rows["huge.png"]["score"] == "" and "data.max_pixels" in rows["huge.png"]["status"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(m.startswith("cannot score") for m in warnings) == 2 and "scored 2 of 4 images" in warnings[-1]
    assert "on_corrupt" not in csv_path.read_text() + caplog.text

    # interrupted half-way: the earlier scores.csv stays whole, and no temporary file is left
    before = csv_path.read_bytes()
    calls = []

    def interrupted(self, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return 0.5, "ok"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Scorer, "try_score", interrupted)
        with pytest.raises(KeyboardInterrupt):
            evaluate(cfg)
    assert csv_path.read_bytes() == before
    assert sorted(p.name for p in csv_path.parent.iterdir()) == [
        "contact_sheet.html", "contact_sheet.jpg", "run_info.json", "scores.csv"]
