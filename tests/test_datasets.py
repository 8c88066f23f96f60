"""Each description reads a tiny fake copy of its dataset's official layout and label files
(real CSV, MATLAB and Excel files, real images); bad input fails with a message naming the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from iqa.data.datasets import DatasetError, build_description
from iqa.data.datasets.live import FOLDERS


def image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path, format="JPEG" if path.suffix == ".jpg" else None)


def write(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)


def matlab(path: Path, variables: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, variables)


def cell(strings: list[str], shape: tuple[int, int]) -> np.ndarray:
    """A MATLAB cell array of strings, as the official .mat files store image names."""
    array = np.empty(len(strings), dtype=object)
    array[:] = strings
    return array.reshape(shape)


def workbook(path: Path, sheets: dict[str, list[list]]) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)


def read(name: str, root: Path, **kwargs):
    description = build_description(name, root.parent, root=root)
    if kwargs:
        description = type(description)(root, **kwargs)
    return description.records()


# -- tiny official layouts -----------------------------------------------------------------


def make_kadid(root: Path) -> None:
    write(root / "dmos.csv", "dist_img,ref_img,dmos,var\n"
          "I01_01_01.png,I01.png,4.57,0.496\nI01_25_05.png,I01.png,1.2,0.3\nI02_10_03.png,I02.png,3.0,0.7\n")
    for name in ("I01_01_01.png", "I01_25_05.png", "I02_10_03.png", "I01.png", "I02.png"):
        image(root / "images" / name)


KONIQ_COUNTS = "0,0,10,20,5,35"


def make_koniq(root: Path) -> None:
    write(root / "koniq10k_scores_and_distributions.csv", "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore\n"
          f"a.jpg,{KONIQ_COUNTS},3.85,0.5,77.38\nb.jpg,{KONIQ_COUNTS},3.4,0.6,68.73\n"
          f"c.jpg,{KONIQ_COUNTS},2.1,0.7,30.5\n")
    write(root / "koniq10k_distributions_sets.csv", "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n"
          "a.jpg,0,0,.2,.7,.1,105,77.38,0.5,training\nb.jpg,0,0,.4,.5,.1,96,68.73,0.6,test\n"
          "c.jpg,0,.5,.5,0,0,90,30.5,0.7,validation\n")
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        image(root / "512x384" / name)


def make_agiqa(root: Path) -> None:
    write(root / "data.csv", "name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align\n"
          'AttnGAN_normal_000.jpg,statue of a man,,,,0.965602553,0.22,0.41,0.62\n'
          'sd1.5_normal_001.jpg,"a tray of sushi, baroque",baroque,,anime,4.488740784,0.3,3.1,0.5\n')
    image(root / "AttnGAN_normal_000.jpg")
    image(root / "sd1.5_normal_001.jpg")


LIVE_KEPT = {1: -2.64, 227: 50.0, 981: 111.77}  # entry → dmos_new; every other entry is a reference


def make_live(root: Path) -> None:
    entries = [(folder, index) for folder, count in FOLDERS for index in range(1, count + 1)]
    dmos = np.zeros(len(entries))
    originals = np.ones(len(entries), np.uint8)
    for entry, score in LIVE_KEPT.items():
        dmos[entry], originals[entry] = score, 0
        folder, index = entries[entry]
        image(root / folder / f"img{index}.bmp")
    references = [f"ref{entry % 29}.bmp" for entry in range(len(entries))]
    spread = np.ones((1, len(entries)))
    matlab(root / "dmos_realigned.mat", {"dmos_new": dmos[None], "orgs": originals[None], "dmos_std": spread})
    matlab(root / "refnames_all.mat", {"refnames_all": cell(references, (1, len(entries)))})


def make_csiq(root: Path) -> None:
    write(root / "csiq_label.txt", "1600.AWGN.1.png 0.061989\naerial_city.jpeg2000.5.png 0.955908\n")
    image(root / "dst_imgs" / "awgn" / "1600.AWGN.1.png")
    image(root / "dst_imgs" / "jpeg2000" / "aerial_city.jpeg2000.5.png")


def make_tid2013(root: Path) -> None:
    write(root / "mos_with_names.txt", "5.51429 i01_01_1.bmp\n0.24242 i25_24_5.bmp\n")
    image(root / "distorted_images" / "i01_01_1.bmp")
    image(root / "distorted_images" / "I25_24_5.BMP")  # the archive's case differs from the label file's


LIVEC_NAMES = [f"t{i}.bmp" for i in range(1, 8)] + ["10.bmp", "100.bmp"]


def make_livec(root: Path) -> None:
    scores = np.array([[50.0] * 7 + [63.9, 3.42]])
    matlab(root / "Data" / "AllImages_release.mat", {"AllImages_release": cell(LIVEC_NAMES, (len(LIVEC_NAMES), 1))})
    matlab(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": scores})
    for name in LIVEC_NAMES[7:]:  # the 7 training images are not needed: they are skipped
        image(root / "Images" / name)


SPAQ_LABELS = "Annotations/MOS and Image attribute scores"


def make_spaq(root: Path) -> None:
    write(root / f"{SPAQ_LABELS}.csv", "Image name,MOS,Brightness,Colorfulness,Contrast,Noisiness,Sharpness\n"
          "00001.jpg,48.86,50,40,55,60,45\n00002.jpg,96,70,65,60,80,85\n", encoding="utf-8-sig")
    image(root / "TestImage" / "00001.jpg")
    image(root / "TestImage" / "00002.jpg")


FLIVE_NAMES = ["blur_dataset/motion0044.jpg", "voc_emotic_ava/EMOTIC__a.jpg", "voc_emotic_ava/VOC2012__b.jpg",
               "EE371R/c.jpg"]


def make_flive(root: Path) -> None:
    scores = (75.4, 0, 94.3, 60)
    write(root / "labels_image.csv", "name,mos\n" + "".join(f"{n},{m}\n" for n, m in zip(FLIVE_NAMES, scores)))
    write(root / "labels640.csv", f"mos_image,name_image,width_image\n59.6,{FLIVE_NAMES[1]},1200\n")
    write(root / "labels=640_padded.csv", "name_image,mos_image,is_valid\n"
          f"{FLIVE_NAMES[0]},75.4,False\n{FLIVE_NAMES[2]},94.3,True\n{FLIVE_NAMES[3]},60,False\n")
    for name in FLIVE_NAMES:
        image(root / name)


def make_aigciqa2023(root: Path) -> None:
    matlab(root / "DATA" / "MOS" / "mosz1.mat", {"MOSz": np.array([[40.5], [61.2], [55.0]])})
    for index in range(3):
        image(root / "Image" / "allimg" / f"{index}.png")


BUILDERS = {
    "kadid": make_kadid, "koniq": make_koniq, "agiqa": make_agiqa, "live": make_live, "csiq": make_csiq,
    "tid2013": make_tid2013, "livec": make_livec, "spaq": make_spaq, "flive": make_flive,
    "aigciqa2023": make_aigciqa2023,
}


def built(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    BUILDERS[name](root)
    return root


def fields(records, attribute: str) -> list:
    return [getattr(record, attribute) for record in records]


# -- each dataset --------------------------------------------------------------------------


def test_kadid_dmos_is_a_mos_and_types_come_from_the_file_name(tmp_path):
    root = built(tmp_path, "kadid")
    records = read("kadid", root)
    assert fields(records, "path") == [root / "images" / n for n in ("I01_01_01.png", "I01_25_05.png", "I02_10_03.png")]
    assert fields(records, "mos") == [4.57, 1.2, 3.0]
    assert fields(records, "reference") == ["I01", "I01", "I02"]
    assert fields(records, "distortion") == ["gaussian_blur", "contrast_change", "jpeg"]
    write(root / "dmos.csv", "dist_img,ref_img,dmos,var\nI01_26_01.png,I01.png,3,0.1\n")
    with pytest.raises(DatasetError, match="I01_26_01.png.*not a KADID name"):
        read("kadid", root)


def test_koniq_reads_mos_zscore_and_the_official_split(tmp_path):
    root = built(tmp_path, "koniq")
    records = read("koniq", root)
    assert fields(records, "path") == [root / "512x384" / n for n in ("a.jpg", "b.jpg", "c.jpg")]
    assert fields(records, "mos") == [77.38, 68.73, 30.5]
    assert fields(records, "reference") == ["a.jpg", "b.jpg", "c.jpg"]
    assert fields(records, "official_split") == ["train", "test", "val"]


def test_koniq_without_the_sets_file_has_no_official_split_and_takes_1024x768(tmp_path):
    root = built(tmp_path, "koniq")
    (root / "koniq10k_distributions_sets.csv").unlink()
    (root / "512x384").rename(root / "1024x768")
    records = read("koniq", root)
    assert fields(records, "official_split") == [None] * 3
    assert records[0].path == root / "1024x768" / "a.jpg"


def test_koniq_sets_file_must_cover_every_image(tmp_path):
    root = built(tmp_path, "koniq")
    write(root / "koniq10k_distributions_sets.csv", "image_name,set\na.jpg,training\nb.jpg,test\n")
    with pytest.raises(DatasetError, match="assigns no set to 1 image.*c.jpg"):
        read("koniq", root)


def test_agiqa_reads_mos_quality_from_the_folder_or_images(tmp_path):
    root = built(tmp_path, "agiqa")
    records = read("agiqa", root)
    assert fields(records, "path") == [root / "AttnGAN_normal_000.jpg", root / "sd1.5_normal_001.jpg"]
    assert fields(records, "mos") == [0.965602553, 4.488740784]
    assert fields(records, "reference") == ["AttnGAN_normal_000.jpg", "sd1.5_normal_001.jpg"]
    (root / "images").mkdir()
    for path in fields(records, "path"):
        path.rename(root / "images" / path.name)
    assert read("agiqa", root)[1].path == root / "images" / "sd1.5_normal_001.jpg"


def test_live_skips_references_and_reads_realigned_dmos(tmp_path):
    root = built(tmp_path, "live")
    records = read("live", root)
    assert fields(records, "path") == [root / "jp2k" / "img2.bmp", root / "jpeg" / "img1.bmp",
                                       root / "fastfading" / "img174.bmp"]
    assert fields(records, "mos") == list(LIVE_KEPT.values())
    assert fields(records, "reference") == ["ref1", "ref24", "ref24"]
    assert fields(records, "distortion") == ["jp2k", "jpeg", "fastfading"]
    matlab(root / "refnames_all.mat", {"refnames_all": cell(["a.bmp"] * 10, (1, 10))})
    with pytest.raises(DatasetError, match="must each list 982 entries.*found 982, 982, 10"):
        read("live", root)


def test_csiq_text_labels_official_folders_and_flat_copy(tmp_path):
    root = built(tmp_path, "csiq")
    records = read("csiq", root)
    assert fields(records, "path") == [root / "dst_imgs" / "awgn" / "1600.AWGN.1.png",
                                       root / "dst_imgs" / "jpeg2000" / "aerial_city.jpeg2000.5.png"]
    assert fields(records, "mos") == [0.061989, 0.955908]
    assert fields(records, "reference") == ["1600", "aerial_city"]
    assert fields(records, "distortion") == ["awgn", "jpeg2000"]
    (root / "dst_imgs_all").mkdir()
    for path in fields(records, "path"):
        path.rename(root / "dst_imgs_all" / path.name)
    assert read("csiq", root)[0].path == root / "dst_imgs_all" / "1600.AWGN.1.png"


def test_csiq_official_workbook(tmp_path):
    root = built(tmp_path, "csiq")
    (root / "csiq_label.txt").unlink()
    header = [None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]
    workbook(root / "csiq.DMOS.xlsx", {
        "all_by_distortion": [["not", "this", "sheet"]],
        "all_by_image": [[], [None, "CSIQ DMOS"], header, [None, 1600, 1, "noise", 1, 0.01, 0.061989],
                         [None, "aerial_city", 3, "jpeg 2000", 5, 0.02, 0.955908], []],
    })
    records = read("csiq", root)
    assert fields(records, "path") == [root / "dst_imgs" / "awgn" / "1600.AWGN.1.png",
                                       root / "dst_imgs" / "jpeg2000" / "aerial_city.jpeg2000.5.png"]
    assert fields(records, "mos") == [0.061989, 0.955908]
    workbook(root / "csiq.DMOS.xlsx", {"all_by_image": [header, [None, 1600, 1, "rain", 1, 0.01, 0.06]]})
    with pytest.raises(DatasetError, match="unknown dst_type 'rain'"):
        read("csiq", root)


def test_workbook_without_openpyxl_names_the_fix(tmp_path, monkeypatch):
    root = built(tmp_path, "csiq")
    (root / "csiq_label.txt").unlink()
    (root / "csiq.DMOS.xlsx").write_bytes(b"")

    def missing_openpyxl(*args, **kwargs):
        raise ImportError("Missing optional dependency 'openpyxl'")

    monkeypatch.setattr("pandas.read_excel", missing_openpyxl)
    with pytest.raises(DatasetError, match=r"csiq.DMOS.xlsx needs openpyxl \(pip install openpyxl\)"):
        read("csiq", root)


def test_tid2013_names_match_case_insensitively(tmp_path):
    root = built(tmp_path, "tid2013")
    records = read("tid2013", root)
    assert fields(records, "path") == [root / "distorted_images" / "i01_01_1.bmp",
                                       root / "distorted_images" / "I25_24_5.BMP"]
    assert fields(records, "mos") == [5.51429, 0.24242]
    assert fields(records, "reference") == ["I01", "I25"]
    assert fields(records, "distortion") == ["additive_gaussian_noise", "sparse_sampling_and_reconstruction"]
    write(root / "mos_with_names.txt", "5.5 i01_01_1.bmp extra\n")
    with pytest.raises(DatasetError, match="line 1 is not '<mos> <file name>'"):
        read("tid2013", root)


def test_livec_skips_the_seven_training_images(tmp_path):
    root = built(tmp_path, "livec")
    records = read("livec", root)
    assert fields(records, "path") == [root / "Images" / "10.bmp", root / "Images" / "100.bmp"]
    assert fields(records, "mos") == [63.9, 3.42]
    assert fields(records, "reference") == ["10.bmp", "100.bmp"]
    matlab(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.ones((1, 5))})
    with pytest.raises(DatasetError, match="9 image names but 5 scores"):
        read("livec", root)


def test_spaq_csv_export_and_official_workbook(tmp_path):
    root = built(tmp_path, "spaq")
    records = read("spaq", root)
    assert fields(records, "path") == [root / "TestImage" / "00001.jpg", root / "TestImage" / "00002.jpg"]
    assert fields(records, "mos") == [48.86, 96.0]
    (root / f"{SPAQ_LABELS}.csv").unlink()
    workbook(root / f"{SPAQ_LABELS}.xlsx", {"Sheet1": [
        ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"],
        ["00001.jpg", 48.86, 50, 40, 55, 60, 45], ["00002.jpg", 96, 70, 65, 60, 80, 85]]})
    assert read("spaq", root) == records


def test_flive_official_split_from_the_paq2piq_files(tmp_path):
    root = built(tmp_path, "flive")
    records = read("flive", root)
    assert fields(records, "path") == [root / name for name in FLIVE_NAMES]
    assert fields(records, "mos") == [75.4, 0.0, 94.3, 60.0]
    assert fields(records, "official_split") == ["train", "test", "val", "train"]
    (root / "labels=640_padded.csv").unlink()  # one file alone does not define the split
    assert fields(read("flive", root), "official_split") == [None] * 4


def test_aigciqa2023_images_are_indexed_from_zero(tmp_path):
    root = built(tmp_path, "aigciqa2023")
    records = read("aigciqa2023", root)
    assert fields(records, "path") == [root / "Image" / "allimg" / f"{i}.png" for i in range(3)]
    assert fields(records, "mos") == [40.5, 61.2, 55.0]
    assert fields(records, "reference") == ["0", "1", "2"]


# -- every dataset -------------------------------------------------------------------------

BEST_AND_WORST = {  # the raw scores of the best and the worst possible image
    "kadid": (5, 1), "koniq": (100, 0), "agiqa": (5, 0), "live": (-3, 112), "csiq": (0, 1), "tid2013": (9, 0),
    "livec": (100, 0), "spaq": (100, 0), "flive": (100, 0), "aigciqa2023": (100, 0),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_labels_normalise_to_unit_range_higher_is_better(tmp_path, name):
    root = built(tmp_path, name)
    description = build_description(name, tmp_path, root=root)
    best, worst = BEST_AND_WORST[name]
    assert description.normalize(best) == pytest.approx(1.0) and description.normalize(worst) == pytest.approx(0.0)
    for record in description.records():
        assert record.path.is_file()
        label = description.normalize(record.mos)
        assert 0.0 <= label <= 1.0 and description.denormalize(label) == pytest.approx(record.mos)


def test_default_folders_under_the_data_dir(tmp_path):
    folders = {name: build_description(name, tmp_path).root.name for name in BUILDERS}
    assert folders == {
        "kadid": "kadid10k", "koniq": "koniq10k", "agiqa": "AGIQA-3K", "live": "databaserelease2", "csiq": "CSIQ",
        "tid2013": "tid2013", "livec": "ChallengeDB_release", "spaq": "SPAQ", "flive": "FLIVE",
        "aigciqa2023": "AIGCIQA2023",
    }
    assert {name for name in BUILDERS if build_description(name, tmp_path).synthetic_distortions} == {
        "kadid", "live", "csiq", "tid2013"}


# -- bad input -----------------------------------------------------------------------------


def test_missing_and_empty_root(tmp_path):
    with pytest.raises(DatasetError, match=r"kadid10k does not exist.*data\.roots\.kadid.*kadid10k/"):
        build_description("kadid", tmp_path).records()
    (tmp_path / "kadid10k").mkdir()
    with pytest.raises(DatasetError, match="kadid10k is empty"):
        build_description("kadid", tmp_path).records()


@pytest.mark.parametrize("name, label_file", [
    ("kadid", "dmos.csv"), ("live", "dmos_realigned.mat"), ("livec", "Data/AllMOS_release.mat"),
    ("flive", "labels_image.csv"), ("aigciqa2023", "DATA/MOS/mosz1.mat"),
])
def test_missing_label_file_is_named(tmp_path, name, label_file):
    root = built(tmp_path, name)
    (root / label_file).unlink()
    with pytest.raises(DatasetError, match=rf"label file .*{label_file} is missing.*docs/datasets.md"):
        read(name, root)


def test_label_file_missing_a_column(tmp_path):
    root = built(tmp_path, "koniq")
    write(root / "koniq10k_scores_and_distributions.csv", "image_name,MOS\na.jpg,3\n")
    with pytest.raises(DatasetError, match=r"distributions.csv has no column\(s\) \['MOS_zscore'\]"):
        read("koniq", root)


def test_matlab_file_missing_its_variable(tmp_path):
    root = built(tmp_path, "aigciqa2023")
    matlab(root / "DATA" / "MOS" / "mosz1.mat", {"MOS": np.ones((3, 1))})
    with pytest.raises(DatasetError, match="mosz1.mat has no variable 'MOSz'"):
        read("aigciqa2023", root)


def test_listed_image_absent(tmp_path):
    root = built(tmp_path, "kadid")
    (root / "images" / "I02_10_03.png").unlink()
    with pytest.raises(DatasetError, match="1 of 3 listed images are missing.*I02_10_03.png"):
        read("kadid", root)


def test_mos_out_of_range_or_not_a_number(tmp_path):
    root = built(tmp_path, "kadid")
    write(root / "dmos.csv", "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,7.5,0.1\n")
    with pytest.raises(DatasetError, match=r"outside the MOS range \[1.0, 5.0\].*I01_01_01.png"):
        read("kadid", root)
    write(root / "dmos.csv", "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,n/a,0.1\n")
    with pytest.raises(DatasetError, match="dmos.csv holds a non-numeric score 'n/a'"):
        read("kadid", root)


def test_pyiqa_meta_csv_both_forms(tmp_path):
    """pyiqa's own headers: KADID's ``ref_name,dist_name,dmos,std``, KonIQ's ``img_name,mos,std,split,…``;
    their paths are relative to pyiqa's ``dataroot_target``, so that folder is ``data.roots.<name>``."""
    kadid = built(tmp_path, "kadid") / "images"
    write(tmp_path / "meta_info_KADID10kDataset.csv", "ref_name,dist_name,dmos,std\n"
          "I01.png,I01_01_01.png,4.57,0.496\nI02.png,I02_10_03.png,3.0,0.7\n")
    records = read("kadid", kadid, meta_file=tmp_path / "meta_info_KADID10kDataset.csv")
    assert fields(records, "path") == [kadid / "I01_01_01.png", kadid / "I02_10_03.png"]
    assert fields(records, "mos") == [4.57, 3.0] and fields(records, "reference") == ["I01", "I02"]
    koniq = built(tmp_path, "koniq") / "512x384"
    write(tmp_path / "meta_info_KonIQ10kDataset.csv", "img_name,mos,std,split,c1,c2,c3,c4,c5,c_total\n"
          "a.jpg,77.38,0.5,0,0,0,.2,.7,.1,105\nc.jpg,30.5,0.7,1,0,.5,.5,0,0,90\n")
    records = read("koniq", koniq, meta_file=tmp_path / "meta_info_KonIQ10kDataset.csv")
    assert fields(records, "path") == [koniq / "a.jpg", koniq / "c.jpg"]
    assert fields(records, "mos") == [77.38, 30.5] and fields(records, "reference") == ["a", "c"]
