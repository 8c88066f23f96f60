"""Figures, tables, config and summary reach W&B (offline) and TensorBoard, read back with each
tool's own reader: wandb's protobuf records of the offline ``.wandb`` file and its ``files/``
folder, and TensorBoard's ``EventAccumulator``."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from iqa.experiment import evaluate, train
from iqa.training.loggers import run_group, varying_overrides
from tests.conftest import TINY_RUN, compose_config

RUN = ["model=cnniqa", "trainer.max_epochs=2", "trainer.limit_test_batches=3"]
BLOCK, HEADER = 32768, 7  # the .wandb file: W&B's LevelDB-style log of protobuf records


def wandb_records(path: Path) -> list:
    """The ``wandb_internal_pb2.Record`` messages of an offline run's ``.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, position = [], b"", HEADER
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        _, length, kind = struct.unpack("<IHB", data[position:position + HEADER])
        if left < HEADER or (kind == 0 and length == 0):  # block trailer
            position += left
            continue
        pending += data[position + HEADER:position + HEADER + length]
        position += HEADER + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_run(run_dir: Path) -> dict:
    """Run header, config, final summary and media files of the offline run in ``run_dir``."""
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    records = wandb_records(next(folder.glob("run-*.wandb")))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update if i.key})
        if record.WhichOneof("record_type") == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    media = folder / "files" / "media"
    return {"run": run, "config": config, "summary": summary, "media": media, "folder": folder}


def table(media: Path, key: str) -> dict:
    (path,) = (media / "table").glob(f"{key}_*.table.json")
    return json.loads(path.read_text())


def csv_rows(path: Path) -> list[list]:
    """The CSV's rows with numbers as numbers and empty fields as None, as the table holds them."""
    def value(text: str):
        if text == "":
            return None
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text

    with open(path, newline="") as handle:
        return [[value(field) for field in row] for row in list(csv.reader(handle))[1:]]


def save_hydra_record(run_dir: Path) -> None:
    """``.hydra/hydra.yaml`` as Hydra's command line writes it (composed runs have none)."""
    from hydra.core.hydra_config import HydraConfig

    (run_dir / ".hydra").mkdir()
    OmegaConf.save({"hydra": HydraConfig.get()}, run_dir / ".hydra" / "hydra.yaml")


def same(logged: list, written: list) -> bool:
    """Equal rows, NaN equal to NaN."""
    return json.dumps(logged) == json.dumps(written)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, data_dir):
    """One tiny run logging to W&B (offline), TensorBoard and CSV, then an eval of its checkpoint."""
    root = tmp_path_factory.mktemp("logged")
    patch = pytest.MonkeyPatch()
    patch.delenv("WANDB_API_KEY", raising=False)
    patch.setenv("WANDB_MODE", "offline")
    patch.setenv("HOME", str(root))
    patch.setenv("WANDB_DIR", str(root))
    try:
        cfg = compose_config("train", TINY_RUN + RUN + ["logger=[wandb,tensorboard]", "logger.val_scatter=true"],
                             root / "run", data_dir)
        train(cfg)
        save_hydra_record(root / "run")
        eval_cfg = compose_config("eval", [f"ckpt_path={root / 'run' / 'checkpoints' / 'best.ckpt'}",
                                           "logger=wandb", "logger.log_thumbnails=true"], root / "eval", data_dir)
        evaluate(eval_cfg)
    finally:
        patch.undo()
    return root / "run", root / "eval"


def test_wandb_offline_run_holds_every_figure_and_the_prediction_tables(logged_run):
    run_dir, _ = logged_run
    logged = wandb_run(run_dir)
    images = {p.relative_to(logged["media"] / "images").as_posix() for p in (logged["media"] / "images").rglob("*.png")}
    assert any(name.startswith("curves_") for name in images)
    for key in ("test/scatter/synthetic", "test/per_type/synthetic"):
        assert sum(name.startswith(f"{key}_") for name in images) == 1, images
    assert sum(name.startswith("val/scatter/synthetic_") for name in images) == 2  # one per validation epoch
    for split in ("test", "val"):
        logged_table = table(logged["media"], f"{split}/predictions")
        assert logged_table["columns"] == ["image_id", "path", "dataset", "split", "distortion", "mos",
                                           "prediction", "prediction_mapped"]
        assert same(logged_table["data"], csv_rows(run_dir / f"predictions_{split}.csv"))
        assert {row[3] for row in logged_table["data"]} == {split}
    per_type = table(logged["media"], "test/per_type_table/synthetic")
    assert same(per_type["data"], csv_rows(run_dir / "per_type_synthetic.csv"))


def test_wandb_run_is_grouped_tagged_and_carries_the_nested_config_and_summary(logged_run):
    run_dir, _ = logged_run
    logged = wandb_run(run_dir)
    run, config, summary = logged["run"], logged["config"], logged["summary"]
    assert run.project == "iqa" and run.job_type == "train" and run.run_group == "cnniqa-synthetic-none"
    assert {"model=cnniqa", "data=synthetic", "prompt=none", "protocol=random_splits"} <= set(run.tags)
    assert "trainer.max_epochs=2" in run.display_name and "logger" not in run.display_name
    assert config["trainer"]["max_epochs"] == 2 and config["module"]["_target_"] == "iqa.training.module.IQAModule"
    assert config["choices"]["model"] == "cnniqa"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert summary["test/srcc"] == pytest.approx(metrics["test/srcc"])
    assert summary["best_epoch"] in (0, 1) and "best/val/srcc" in summary and "best/val/plcc" in summary


def test_eval_run_logs_as_eval_and_links_the_training_run(logged_run):
    run_dir, eval_dir = logged_run
    trained, evaluated = wandb_run(run_dir), wandb_run(eval_dir)
    run = evaluated["run"]
    assert run.job_type == "eval" and run.project == "iqa"
    assert run.run_group == trained["run"].run_group and "model=cnniqa" in run.tags
    assert evaluated["config"]["train_run"] == {"dir": str(run_dir.resolve()), "wandb_id": trained["run"].run_id}
    assert run.display_name.startswith(f"eval:{trained['run'].run_id}")
    assert evaluated["config"]["train_config"]["seed"] == 42
    assert table(evaluated["media"], "test/predictions")["columns"][-1] == "thumbnail"  # logger.log_thumbnails
    assert "test/srcc" in evaluated["summary"]


def test_tensorboard_events_hold_scalars_figures_and_hparams(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, _ = logged_run
    (version,) = {path.parent for path in run_dir.rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(version), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    images = {"curves", "test/scatter/synthetic", "test/per_type/synthetic", "val/scatter/synthetic"}
    assert images <= set(tags["images"])
    assert len(events.Images("val/scatter/synthetic")) == 2
    assert {"val/srcc", "val/plcc", "test/srcc", "test/plcc", "best_epoch", "best/val/srcc"} <= set(tags["scalars"])
    hparams = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model"].string_value == "cnniqa" and start.hparams["seed"].number_value == 42
    assert start.hparams["trainer.max_epochs"].number_value == 2
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert {"test/srcc", "best/val/srcc", "best_epoch"} <= {m.name.tag for m in experiment.metric_infos}


def test_csv_only_run_writes_files_and_no_dashboard(compose_train):
    cfg = compose_train("model=cnniqa", "trainer.limit_test_batches=2")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert {"curves.png", "predictions_test.csv", "predictions_val.csv"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "wandb").exists() and not list(run_dir.rglob("events.out.tfevents.*"))
    assert len(csv_rows(run_dir / "predictions_test.csv")) == json.loads((run_dir / "metrics.json").read_text())[
        "test/n_images"]


def hydra_record(mode: str, task: list[str], output_dir: str = "/work/multirun/train/2025-01-01_00-00-00/3") -> dict:
    return OmegaConf.create({"mode": mode, "overrides": {"task": task},
                             "runtime": {"output_dir": output_dir, "cwd": "/work",
                                         "choices": {"model": "cnniqa", "data": "kadid", "prompt": "none",
                                                     "experiment": None}}})


def test_a_sweep_job_groups_by_its_sweep_folder_and_is_named_by_the_swept_keys():
    record = hydra_record("MULTIRUN", ["model=cnniqa", "seed=2", "logger=wandb", "trainer.max_epochs=3"])
    assert run_group(record) == "multirun/train/2025-01-01_00-00-00"
    argv = ["model=cnniqa", "seed=1,2,3", "logger=wandb", "trainer.max_epochs=3"]
    assert varying_overrides(record, argv) == {"seed": "2"}


def test_a_single_run_groups_by_preset_or_choices_and_names_its_meaningful_overrides():
    record = hydra_record("RUN", ["seed=2", "logger=wandb", "data.num_workers=4", "paths.data_dir=/d"])
    assert run_group(record) == "cnniqa-kadid-none"
    assert varying_overrides(record, []) == {"seed": "2"}
    record.runtime.choices.experiment = "loda"
    assert run_group(record) == "experiment=loda"
