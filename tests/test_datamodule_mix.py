"""The multi-dataset path: IQADataModule with two benchmarks, and a tiny real training run that
validates and tests per dataset (``val/<name>/srcc``, ``val/mean/srcc``, ``test/<name>/srcc``,
``test/mean/srcc``; IQAModule._summarise).

Only the synthetic benchmark is generated locally; the second benchmark is ``kadid`` read from a
pyiqa-style meta CSV (``ref_name,dist_name,dmos``, ``data.meta_files.kadid``) over copies of a
subset of the synthetic images in a folder of its own (``data.roots.kadid``). Its scores are the
synthetic MOS mapped onto KADID's 1–5 scale, so the two datasets also differ in MOS range.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from iqa.data.datamodule import IQADataModule
from iqa.data.datasets import build_description
from iqa.data.protocol import SplitProtocol
from iqa.data.sampling import EpochSampler
from iqa.experiment import train

SECOND = "kadid"
N_REFERENCES = 10  # the second benchmark: 10 contents x (reference + 4 blur levels) = 50 images


def kadid_mos(synthetic_mos: float) -> float:
    """Synthetic MOS in [0, 100] → KADID's [1, 5] scale (higher is better in both)."""
    return 1.0 + 4.0 * synthetic_mos / 100.0


@pytest.fixture(autouse=True)
def private_check_cache(tmp_path, monkeypatch):
    """Each test gets its own image-check cache (the default lives under XDG_CACHE_HOME)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="module")
def second_root(tmp_path_factory, data_dir) -> Path:
    """A KADID-like benchmark folder: copies of a subset of the synthetic images + meta.csv."""
    root = tmp_path_factory.mktemp(SECOND)
    (root / "images").mkdir()
    records = build_description("synthetic", data_dir).records()
    references = sorted({r.reference for r in records})[-N_REFERENCES:]  # the last contents
    rows = []
    for record in records:
        if record.reference in references and record.distortion in (None, "gaussian_blur"):
            shutil.copy(record.path, root / "images" / record.path.name)
            rows.append((record.reference, f"images/{record.path.name}", kadid_mos(record.mos)))
    with open(root / "meta.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("ref_name", "dist_name", "dmos"), *rows])
    return root


def second_overrides(root: Path) -> list[str]:
    return [f"data.datasets=[synthetic,{SECOND}]", f"+data.roots.{SECOND}={root}",
            f"+data.meta_files.{SECOND}={root / 'meta.csv'}"]


# --- the data module ------------------------------------------------------------------------

def make_datamodule(data_dir: Path, second_root: Path, **kwargs) -> IQADataModule:
    options = dict(crop_size=32, n_train_crops=1, n_test_crops=2, batch_size=8, eval_batch_size=8, num_workers=0)
    options.update(kwargs)
    return IQADataModule(["synthetic", SECOND], str(data_dir), SplitProtocol(), roots={SECOND: str(second_root)},
                         meta_files={SECOND: str(second_root / "meta.csv")}, **options)


def test_second_benchmark_reads_the_meta_csv(second_root):
    description = build_description(SECOND, "/nowhere", second_root)
    description = type(description)(description.root, meta_file=second_root / "meta.csv")
    records = description.records()
    assert len(records) == 5 * N_REFERENCES and len({r.reference for r in records}) == N_REFERENCES
    assert {r.mos for r in records} == {kadid_mos(m) for m in (100, 80, 60, 40, 20)}
    assert all(r.path.parent == second_root / "images" for r in records)


def test_two_datasets_train_on_the_union_and_evaluate_per_dataset(data_dir, second_root):
    datamodule = make_datamodule(data_dir, second_root)
    assert [d.name for d in datamodule.train_descriptions] == ["synthetic", SECOND]
    assert datamodule.description(SECOND).root == second_root
    assert datamodule.description(SECOND).meta_file == second_root / "meta.csv"
    datamodule.setup("fit")
    assert datamodule.val_names == datamodule.test_names == ["synthetic", SECOND]
    sizes = {name: len(build_description(name, data_dir).records()) if name == "synthetic" else 5 * N_REFERENCES
             for name in ("synthetic", SECOND)}
    for name, total in sizes.items():
        val, test = len(datamodule.val_sets[name]), len(datamodule.test_sets[name])
        assert 0 < val < total and 0 < test < total
    train_parts = sum(sizes.values()) - sum(len(s) for s in datamodule.val_sets.values()) \
        - sum(len(s) for s in datamodule.test_sets.values())
    assert len(datamodule.train_set) == train_parts  # the union of both training parts
    assert len(datamodule.val_dataloader()) == len(datamodule.test_dataloader()) == 2

    # Splits go by reference inside each dataset: no content crosses train/test.
    test_refs = {r.reference for r in datamodule.test_sets[SECOND].records}
    val_refs = {r.reference for r in datamodule.val_sets[SECOND].records}
    all_refs = {r.reference for r in datamodule.description(SECOND).records()}
    assert test_refs and val_refs and not test_refs & val_refs and test_refs | val_refs < all_refs

    # Each test loader yields its own dataset's images, in that dataset's MOS units.
    batch = next(iter(datamodule.test_dataloader()[1]))
    assert batch["images"].shape[1:] == (2, 3, 32, 32)
    assert torch.all((batch["mos"] >= 1) & (batch["mos"] <= 5))
    assert torch.allclose(batch["label"], (batch["mos"] - 1) / 4)


def test_training_set_draws_from_both_datasets_with_their_own_labels(data_dir, second_root):
    datamodule = make_datamodule(data_dir, second_root)
    datamodule.setup("fit")
    parts = datamodule.train_set.parts
    assert [part.description.name for part in parts] == ["synthetic", SECOND]
    offsets = datamodule.train_set.offsets
    first, second = datamodule.train_set[(0, 0)], datamodule.train_set[(0, int(offsets[1]))]
    assert 20 <= float(first["mos"]) <= 100 and float(first["label"]) == pytest.approx((float(first["mos"])) / 100)
    assert 1 <= float(second["mos"]) <= 5 and float(second["label"]) == pytest.approx((float(second["mos"]) - 1) / 4)
    assert second["image_id"] == parts[1].ids[0]
    order = list(iter(EpochSampler(datamodule.train_set, seed=0)))
    indices = sorted(index for _, index in order)
    assert indices == list(range(len(datamodule.train_set)))  # an epoch visits every image of both parts


def test_a_root_of_a_dataset_the_run_does_not_use_is_refused(data_dir, second_root):
    from iqa.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=rf"data\.roots\.koniq=/x: this run does not use koniq; it uses "
                                                 rf"synthetic, {SECOND} \(data\.datasets and data\.test_on\)"):
        IQADataModule(["synthetic"], str(data_dir), SplitProtocol(), roots={"koniq": "/x"}, test_on=[SECOND])
    datamodule = IQADataModule(["synthetic"], str(data_dir), SplitProtocol(), test_on=[SECOND],
                               roots={SECOND: str(second_root), "koniq": None})  # null: no folder given
    assert datamodule.description(SECOND).root == second_root


@pytest.mark.parametrize("option", sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "data").glob("*.yaml")))
def test_every_data_option_lists_its_own_roots(tmp_path, option):
    """``data.roots.<name>=`` needs no ``+`` for the datasets of the chosen ``data=``."""
    from tests.conftest import compose_config

    datasets = compose_config("train", [f"data={option}"], tmp_path / "run", tmp_path).data.datasets
    overrides = [f"data={option}", *(f"data.roots.{name}=/x/{name}" for name in datasets)]
    cfg = compose_config("train", overrides, tmp_path / "run", tmp_path)
    assert dict(cfg.data.roots) == {name: f"/x/{name}" for name in datasets}


# --- a tiny real training run -----------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, data_dir, second_root):
    from tests.conftest import TINY_RUN, compose_config

    run_dir = tmp_path_factory.mktemp("mixed_run")
    tiny = [o for o in TINY_RUN if not o.startswith("model=")] + ["model=cnniqa"]  # the fastest model on a CPU
    overrides = tiny + second_overrides(second_root) + ["trainer.limit_test_batches=4"]
    cfg = compose_config("train", overrides, run_dir, data_dir)
    return run_dir, train(cfg)


def logged_val_metrics(run_dir: Path) -> dict[str, float]:
    """The last validation row of the CSV logger's metrics.csv."""
    (path,) = run_dir.rglob("metrics.csv")
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/mean/srcc")]
    assert rows, f"no validation row in {path}"
    return {key: float(value) for key, value in rows[-1].items() if key.startswith("val/") and value}


def test_mixed_run_tests_per_dataset_and_their_mean(mixed_run):
    run_dir, results = mixed_run
    names = ("synthetic", SECOND)
    for name in names:
        for metric in ("srcc", "plcc", "krcc"):
            assert math.isfinite(results[f"test/{name}/{metric}"])
        assert results[f"test/{name}/n_images"] > 0
    assert "test/srcc" not in results  # with several datasets there is no unprefixed value
    for metric in ("srcc", "plcc", "krcc"):
        mean = sum(results[f"test/{name}/{metric}"] for name in names) / len(names)
        assert results[f"test/mean/{metric}"] == pytest.approx(mean, abs=1e-6)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/mean/srcc"] == pytest.approx(results["test/mean/srcc"])
    assert {f"test/{name}/srcc" for name in names} <= set(metrics)
    for name in names:
        assert (run_dir / f"scatter_{name}.png").is_file()


def test_mixed_run_validates_per_dataset_and_their_mean(mixed_run):
    run_dir, _ = mixed_run
    values = logged_val_metrics(run_dir)
    names = ("synthetic", SECOND)
    for name in names:
        assert math.isfinite(values[f"val/{name}/srcc"])
    assert math.isfinite(values["val/mean/srcc"])
    mean = sum(values[f"val/{name}/srcc"] for name in names) / len(names)
    assert values["val/mean/srcc"] == pytest.approx(mean, abs=1e-6)
    assert values["val/srcc"] == pytest.approx(values["val/mean/srcc"])  # the monitored key is the mean


def test_documented_override_form_composes(tmp_path, second_root):
    """docs/datasets.md: ``+data.roots.<name>=`` and ``+data.meta_files.<name>=`` (new keys)."""
    from tests.conftest import compose_config

    overrides = second_overrides(second_root)
    assert all(o.startswith("+data.") for o in overrides if ".roots." in o or ".meta_files." in o)
    cfg = compose_config("train", overrides, tmp_path / "run", tmp_path / "data")
    assert cfg.data.roots[SECOND] == str(second_root)
