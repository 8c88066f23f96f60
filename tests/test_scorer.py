"""``load_scorer`` on every kind of image input, and the contact sheets of ``eval.py images=``,
with a tiny checkpoint trained here through the real entry-point code."""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

import iqa
from iqa.contact_sheet import write_contact_sheets
from iqa.experiment import evaluate, train
from iqa.scorer import load_scorer
from tests.conftest import TINY_RUN, compose_config

COLOURS = [(230, 30, 30), (30, 200, 40), (40, 60, 220), (240, 220, 30), (20, 20, 20), (250, 250, 250)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data_dir) -> Path:
    """best.ckpt of a tiny real training run (resnet18, 32-pixel crops, 2 test crops)."""
    run_dir = tmp_path_factory.mktemp("scorer_run")
    train(compose_config("train", TINY_RUN + ["trainer.limit_test_batches=1"], run_dir, data_dir))
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def scorer(checkpoint):
    return load_scorer(checkpoint, device="cpu")


def photo(path: Path, seed: int, mode: str = "RGB", colour: tuple[int, int, int] | None = None) -> Path:
    """A small JPEG: random texture, or a flat colour."""
    rng = np.random.default_rng(seed)
    pixels = np.full((48, 64, 3), colour, np.uint8) if colour else rng.integers(0, 256, (48, 64, 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, quality=90)
    return path


def test_the_same_image_in_every_form_gets_the_same_score(checkpoint, scorer, tmp_path):
    path = photo(tmp_path / "a.jpg", 0)
    expected = scorer(path)
    assert isinstance(expected, float) and scorer(str(path)) == expected
    with Image.open(path) as image:
        pil = image.copy()
    array = np.array(pil)  # (H, W, 3) uint8
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    forms = {"PIL": pil, "numpy": array, "numpy float": array / 255.0, "tensor uint8": tensor,
             "tensor float": tensor.float() / 255, "top-level iqa.load_scorer": None}
    for name, image in forms.items():
        score = iqa.load_scorer(checkpoint, device="cpu")(array) if image is None else scorer(image)
        assert score == pytest.approx(expected, abs=1e-6), name


def test_grayscale_images(scorer, tmp_path):
    path = photo(tmp_path / "grey.jpg", 1, mode="L")
    expected = scorer(path)
    with Image.open(path) as image:
        grey = np.asarray(image)  # (H, W) uint8
        assert grey.ndim == 2
        assert scorer(image) == pytest.approx(expected, abs=1e-6)
    assert scorer(grey) == pytest.approx(expected, abs=1e-6)
    assert scorer(torch.from_numpy(grey)[None]) == pytest.approx(expected, abs=1e-6)  # (1, H, W)


def test_lists_and_batches_give_one_score_per_image_in_order(scorer, tmp_path):
    paths = [photo(tmp_path / f"{i}.jpg", i) for i in range(3)]
    single = [scorer(p) for p in paths]
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    assert scorer(paths) == single and isinstance(scorer([paths[0]]), list)
    assert scorer([paths[0], Image.open(paths[1]), arrays[2]]) == pytest.approx(single, abs=1e-6)
    assert scorer(np.stack(arrays)) == pytest.approx(single, abs=1e-6)  # (B, H, W, 3)
    assert scorer(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)) == pytest.approx(single, abs=1e-6)


@pytest.mark.parametrize(("image", "error", "message"), [
    (np.zeros((3, 48, 64), np.uint8), ValueError, r"shape \(3, 48, 64\).*channels-first.*transpose\(1, 2, 0\)"),
    (np.zeros((48, 64, 4), np.uint8), ValueError, r"\(H, W, 3\) RGB or \(H, W\) grayscale.*\(48, 64, 4\)"),
    (np.zeros((48, 64, 3), np.uint16), ValueError, r"uint8 or float array.*dtype uint16"),
    (np.full((48, 64, 3), 200.0), ValueError, r"values in \[200, 200\].*\[0, 1\]"),
    (torch.zeros(48, 64, 3), ValueError, r"shape \(48, 64, 3\).*channels-last.*permute\(2, 0, 1\)"),
    (torch.zeros(3, 48, 64, dtype=torch.int64), ValueError, r"uint8 or float tensor.*torch.int64"),
    (torch.full((3, 48, 64), -0.5), ValueError, r"values in \[-0.5, -0.5\].*mean/std"),
    (42, TypeError, r"cannot score a int"),
    ([b"bytes"], TypeError, r"cannot score a bytes"),
])
def test_wrong_inputs_are_named(scorer, image, error, message):
    with pytest.raises(error, match=message):
        scorer(image)


def test_eval_images_writes_contact_sheets_best_first(checkpoint, data_dir, tmp_path):
    folder = tmp_path / "my photos"
    for i, colour in enumerate(COLOURS):
        photo(folder / f"{i} & <{i}>.jpg", i, colour=colour)
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "eval"
    evaluate(compose_config("eval", [f"ckpt_path={checkpoint}", f"images='{folder}/*.jpg'"], out, data_dir))
    with open(out / "scores.csv", newline="") as handle:
        scores = {Path(row["path"]): row["score"] for row in csv.DictReader(handle)}
    assert len(scores) == 7 and scores[folder / "broken.jpg"] == ""

    page = (out / "contact_sheet.html").read_text()
    assert "6 images by predicted quality, best first; 1 unreadable image(s) left out" in page
    shown = [Path(html.unescape(p)) for p in re.findall(r"<code>(.*?)</code>", page)]
    ranked = sorted((p for p in scores if scores[p]), key=lambda p: -float(scores[p]))
    assert shown == ranked  # every readable image once, best first
    assert "<0>" not in page and "0 &amp; &lt;0&gt;.jpg" in page  # paths are escaped
    links = [out / unquote(html.unescape(link)) for link in re.findall(r'<a href="([^"]*)"', page)]
    assert [link.resolve() for link in links] == [p.resolve() for p in ranked]  # relative links that work
    assert page.count('<img src="data:image/jpeg;base64,') == 6

    with Image.open(out / "contact_sheet.jpg") as sheet:
        assert sheet.format == "JPEG" and sheet.width == 6 * 172
        first_row = sheet.convert("RGB")
    for rank, path in enumerate(ranked):  # each cell shows its image: the colour at the cell's centre
        colour = COLOURS[int(path.name.split(" ")[0])]
        centre = first_row.getpixel((rank * 172 + 86, first_row.height - 30 - 86))
        assert np.abs(np.subtract(centre, colour)).max() < 12, (rank, path)


def test_sheets_show_the_best_images_up_to_the_limit_and_say_so(tmp_path):
    paths = [photo(tmp_path / f"{i}.jpg", i) for i in range(12)]
    jpg, page = write_contact_sheets([(p, i / 10) for i, p in enumerate(paths)], tmp_path / "out", max_images=5)
    text = page.read_text()
    assert "5 images by predicted quality, best first (the best 5 of 12; every score is in scores.csv)" in text
    assert re.findall(r"<b>#\d+</b> ([\d.]+)", text) == ["1.1000", "1.0000", "0.9000", "0.8000", "0.7000"]
    with Image.open(jpg) as sheet:
        assert sheet.size[0] == 5 * 172
