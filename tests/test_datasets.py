"""Each description reads a tiny fake copy of its official layout; bad input fails clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from iqa.data.datasets import DatasetError, build_description


def image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_kadid(root):
    write(root / "dmos.csv", "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.5,0.1\nI02_10_05.png,I02.png,1.5,0.2\n")
    for name in ("I01_01_01.png", "I02_10_05.png"):
        image(root / "images" / name)


def make_koniq(root):
    write(root / "koniq10k_scores_and_distributions.csv", "image_name,MOS,SD,MOS_zscore\na.jpg,3.1,0.5,55.0\nb.jpg,2,0.4,30\n")
    write(root / "koniq10k_distributions_sets.csv", "image_name,set\na.jpg,training\nb.jpg,test\n")
    for name in ("a.jpg", "b.jpg"):
        image(root / "512x384" / name)


def make_livec(root):
    names = [f"t{i}.bmp" for i in range(7)] + ["x.bmp", "y.bmp"]
    (root / "Data").mkdir(parents=True)
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": np.array(names, dtype=object)[:, None]})
    savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.arange(9, dtype=float)[None] * 10})
    for name in names:
        image(root / "Images" / name)


def make_tid2013(root):
    write(root / "mos_with_names.txt", "5.5 i01_01_1.bmp\n3.25 I02_08_5.BMP\n")
    image(root / "distorted_images" / "i01_01_1.bmp")
    image(root / "distorted_images" / "I02_08_5.BMP")


def make_agiqa(root):
    write(root / "data.csv", "name,prompt,mos_quality,std_quality\nAttnGAN_normal_000.jpg,a cat,2.5,0.3\nb.jpg,x,4,0.1\n")
    image(root / "AttnGAN_normal_000.jpg")
    image(root / "b.jpg")


def make_aigciqa2023(root):
    (root / "DATA" / "MOS").mkdir(parents=True)
    savemat(root / "DATA" / "MOS" / "mosz1.mat", {"MOSz": np.array([[40.0], [60.0], [55.0]])})
    for index in range(3):
        image(root / "Image" / "allimg" / f"{index}.png")


def make_live(root):
    from iqa.data.datasets.live import FOLDERS

    entries = [(folder, i) for folder, count in FOLDERS for i in range(1, count + 1)]
    originals = np.zeros(len(entries))
    originals[::10] = 1
    root.mkdir(parents=True, exist_ok=True)
    savemat(root / "dmos.mat", {"dmos": np.linspace(0, 90, len(entries))[None], "orgs": originals[None]})
    refs = np.array([f"ref{i % 29}.bmp" for i in range(len(entries))], dtype=object)[None]
    savemat(root / "refnames_all.mat", {"refnames_all": refs})
    for folder, i in entries:
        image(root / folder / f"img{i}.bmp")


def make_csiq(root):
    write(root / "csiq_dmos.csv", "image,dst_idx,dst_type,dst_lev,dmos_std,dmos\n1600,1,noise,1,0.01,0.06\n1600,3,jpeg,4,0.02,0.5\n")
    image(root / "dst_imgs" / "awgn" / "1600.AWGN.1.png")
    image(root / "dst_imgs" / "jpeg" / "1600.JPEG.4.png")


def make_spaq(root):
    write(root / "Annotations" / "mos.csv", "Image name,MOS,Brightness\n00001.jpg,42.5,50\n00002.jpg,80,40\n")
    image(root / "TestImage" / "00001.jpg")
    image(root / "TestImage" / "00002.jpg")


def make_flive(root):
    write(root / "labels_image.csv", "name,mos,set\nvoc/a.jpg,70.1,train\nblur/b.jpg,55,test\n")
    image(root / "voc" / "a.jpg")
    image(root / "blur" / "b.jpg")


EXPECTED = {  # name: (builder, number of records, first MOS, first reference, first distortion, first split)
    "kadid": (make_kadid, 2, 4.5, "I01", "gaussian_blur", None),
    "koniq": (make_koniq, 2, 55.0, "a.jpg", None, "train"),
    "livec": (make_livec, 2, 70.0, "x.bmp", None, None),
    "tid2013": (make_tid2013, 2, 5.5, "i01", "type_01", None),
    "agiqa": (make_agiqa, 2, 2.5, "AttnGAN_normal_000.jpg", None, None),
    "aigciqa2023": (make_aigciqa2023, 3, 40.0, "0", None, None),
    "live": (make_live, 982 - 99, None, None, "jp2k", None),
    "csiq": (make_csiq, 2, 0.06, "1600", "awgn", None),
    "spaq": (make_spaq, 2, 42.5, "00001.jpg", None, None),
    "flive": (make_flive, 2, 70.1, "voc/a.jpg", None, "train"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_official_layout_is_read(tmp_path, name):
    builder, count, mos, reference, distortion, split = EXPECTED[name]
    builder(tmp_path / name)
    description = build_description(name, tmp_path, root=tmp_path / name)
    records = description.records()
    assert len(records) == count
    first = records[0]
    assert first.path.is_file() and first.distortion == distortion and first.official_split == split
    if mos is not None:
        assert first.mos == pytest.approx(mos) and first.reference == reference
    label = description.normalise(first.mos)
    assert 0 <= label <= 1 and description.denormalise(label) == pytest.approx(first.mos)


def test_lower_is_better_datasets_flip_the_label(tmp_path):
    make_live(tmp_path / "live")
    live = build_description("live", tmp_path, root=tmp_path / "live")
    assert live.normalise(0.0) == 1.0 and live.normalise(100.0) == 0.0


def test_missing_and_empty_root(tmp_path):
    with pytest.raises(DatasetError, match=r"kadid10k.* does not exist.*data.root"):
        build_description("kadid", tmp_path).records()
    (tmp_path / "kadid10k").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        build_description("kadid", tmp_path).records()


def test_label_file_missing_a_column(tmp_path):
    make_koniq(tmp_path / "koniq10k")
    write(tmp_path / "koniq10k" / "koniq10k_scores_and_distributions.csv", "image_name,MOS\na.jpg,3\n")
    with pytest.raises(DatasetError, match=r"no column\(s\) \['MOS_zscore'\]"):
        build_description("koniq", tmp_path).records()


def test_listed_image_absent(tmp_path):
    make_kadid(tmp_path / "kadid10k")
    (tmp_path / "kadid10k" / "images" / "I02_10_05.png").unlink()
    with pytest.raises(DatasetError, match="1 of 2 listed images are missing.*I02_10_05.png"):
        build_description("kadid", tmp_path).records()


def test_mos_out_of_range(tmp_path):
    make_kadid(tmp_path / "kadid10k")
    write(tmp_path / "kadid10k" / "dmos.csv", "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,7.5,0.1\n")
    with pytest.raises(DatasetError, match=r"outside the MOS range \[1.0, 5.0\].*I01_01_01.png"):
        build_description("kadid", tmp_path).records()


def test_pyiqa_meta_csv_both_forms(tmp_path):
    make_kadid(tmp_path / "kadid10k")
    root = tmp_path / "kadid10k"
    write(root / "meta.csv", "ref_name,dist_name,mos\nI01.png,images/I01_01_01.png,4\n")
    description = type(build_description("kadid", tmp_path))(root, meta_file="meta.csv")
    (record,) = description.records()
    assert record.reference == "I01" and record.mos == 4.0
    write(root / "meta2.csv", "img_name,mos\nimages/I02_10_05.png,2\n")
    (record,) = type(description)(root, meta_file="meta2.csv").records()
    assert record.reference == "I02_10_05" and record.path == root / "images" / "I02_10_05.png"
