"""BIQ2021 on a small generated copy of its layout, with the quirks of the real release:
names with spaces and parentheses, two empty trailing columns in the training file, and one
row naming ``….jpg`` whose file is ``….JPG``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image

from iqa.data.datasets import DatasetError, build_description
from iqa.data.protocol import SplitProtocol
from iqa.experiment import train
from tests.conftest import TINY_RUN, compose_config

TRAIN_FILE, TEST_FILE = "Train (Images and MOS).csv", "Test (Images and MOS).csv"
NAMES = [f"ss01 ({k}).jpg" for k in range(1, 7)] + [f"ss02 ({k}).jpg" for k in range(1, 7)] + [
    f"ss03 ({k}).jpg" for k in range(1, 19)]
TEST_NAMES = NAMES[4:6] + NAMES[10:12] + NAMES[-2:]  # 6 test, 24 train images
UPPER_CASE = "ss02 (3).jpg"  # listed as .jpg, stored as .JPG
UPPER_CASE_LINE = 2 + [n for n in NAMES if n not in TEST_NAMES].index(UPPER_CASE)  # line 1 is the header


def make_biq2021(root: Path) -> dict[str, float]:
    """Images/ with 30 small JPEGs and the two split files; returns the MOS of each name."""
    rng = np.random.default_rng(0)
    (root / "Images").mkdir(parents=True)
    scores = {}
    for name in NAMES:
        scores[name] = round(float(rng.uniform()), 4)
        stored = name.replace(".jpg", ".JPG") if name == UPPER_CASE else name
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "Images" / stored, format="JPEG")
    train_rows = "".join(f"{n},{scores[n]:.4f},,\n" for n in NAMES if n not in TEST_NAMES)
    (root / TRAIN_FILE).write_text("Image Name,MOS,,\n" + train_rows)
    (root / TEST_FILE).write_text("Image Name,MOS\n" + "".join(f"{n},{scores[n]:.4f}\n" for n in TEST_NAMES))
    return scores


@pytest.fixture
def biq_root(tmp_path) -> Path:
    root = tmp_path / "biq2021"
    make_biq2021(root)
    return root


def test_records_and_official_split(tmp_path):
    scores = make_biq2021(tmp_path / "biq2021")
    records = build_description("biq2021", tmp_path).records()  # the default folder
    assert len(records) == 30
    assert [r.official_split for r in records].count("train") == 24
    assert {r.path.name for r in records if r.official_split == "test"} == set(TEST_NAMES)
    assert {r.path.name: r.mos for r in records if r.path.name != "ss02 (3).JPG"} == {
        n: scores[n] for n in NAMES if n != UPPER_CASE}
    assert len({r.reference for r in records}) == 30  # each image its own reference
    split = SplitProtocol().split(records)  # no official validation: carved from train
    assert (len(split.train), len(split.val), len(split.test)) == (22, 2, 6)
    assert {records[i].path.name for i in split.test} == set(TEST_NAMES)


def test_case_mismatch_resolves_with_one_warning_naming_the_row(biq_root, caplog):
    caplog.set_level(logging.WARNING, logger="iqa.data.datasets.biq2021")
    records = build_description("biq2021", biq_root.parent, root=biq_root).records()
    assert biq_root / "Images" / "ss02 (3).JPG" in [r.path for r in records]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"{TRAIN_FILE} line {UPPER_CASE_LINE} lists 'ss02 (3).jpg' but the file is 'ss02 (3).JPG'" in warnings[0]


def test_listed_but_absent_image_is_named(biq_root):
    with open(biq_root / TEST_FILE, "a") as handle:
        handle.write("ss03 (99).jpg,0.5\n")
    with pytest.raises(DatasetError, match=r"1 of 31 listed images are missing.*ss03 \(99\)\.jpg"):
        build_description("biq2021", biq_root.parent, root=biq_root).records()


def test_image_listed_twice_is_refused(biq_root):
    with open(biq_root / TEST_FILE, "a") as handle:
        handle.write("ss01 (1).jpg,0.5\n")
    with pytest.raises(DatasetError, match=r"Test \(Images and MOS\)\.csv line 8 lists 'ss01 \(1\)\.jpg' again"):
        build_description("biq2021", biq_root.parent, root=biq_root).records()


def _test_names(biq_root: Path, tmp_path: Path, *overrides: str) -> set[str]:
    """The test part of the split that ``data=biq2021`` and the protocol overrides compose to."""
    cfg = compose_config("train", TINY_RUN + ["data=biq2021", f"data.roots.biq2021={biq_root}", *overrides],
                         tmp_path / "run", tmp_path)
    records = build_description(cfg.data.datasets[0], cfg.data.data_dir, cfg.data.roots.biq2021).records()
    split = instantiate(cfg.data.protocol).split(records)
    assert (len(split.train), len(split.val), len(split.test)) == (22, 2, 6)
    return {records[i].path.name for i in split.test}


def test_random_splits_when_the_official_split_is_off(biq_root, tmp_path):
    assert _test_names(biq_root, tmp_path) == set(TEST_NAMES)  # official by default
    first = _test_names(biq_root, tmp_path, "protocol.use_official=false")
    assert first != set(TEST_NAMES)
    assert _test_names(biq_root, tmp_path, "protocol.use_official=false") == first  # seeded
    assert _test_names(biq_root, tmp_path, "protocol.use_official=false", "protocol.split_index=1") != first


def test_fast_dev_run_on_biq2021(biq_root, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="iqa.data.datasets.biq2021")
    cfg = compose_config("train", TINY_RUN + ["data=biq2021", f"data.roots.biq2021={biq_root}", "trainer.fast_dev_run=true",
                                              "data.batch_size=4", "data.eval_batch_size=4"],
                         tmp_path / "run", tmp_path)
    results = train(cfg)
    assert results["test/n_images"] > 0
    assert sum("case differs" in r.getMessage() for r in caplog.records) == 1
