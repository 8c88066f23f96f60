"""Untrusted files never execute: real malicious checkpoints and weights files, through
every entry point that reads one. Each is refused with an error naming the file, and the
marker file their payload would create never appears."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from iqa.checkpoint import CheckpointError, UntrustedCheckpointError, check_config_targets
from iqa.experiment import evaluate, train
from iqa.registry import create_model
from iqa.scorer import load_scorer
from tests.conftest import ROOT

QMAMBA = ["model=qmamba", "+model.depths=[1,1,1,1]", "+model.dims=16", "model.scan_backend=torch"]
QMAMBA_TINY = dict(depths=[1, 1, 1, 1], dims=16)
LODA_TINY = dict(vit_embed_dim=32, vit_depth=2, vit_num_heads=2, cnn="resnet10t", latent_dim=16)


class Payload:
    """Unpickling this object creates ``marker``: what a malicious pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def touch_config(marker: Path) -> dict:
    """A config node whose instantiation creates ``marker`` (a foreign ``_target_``)."""
    return {"_target_": "pathlib.Path.touch", "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]}}


def torch_load_config(payload_file: Path) -> dict:
    """A node naming a callable reached through an ``iqa.`` module: ``iqa.checkpoint.torch.load``."""
    return {"_target_": "iqa.checkpoint.torch.load", "f": str(payload_file), "weights_only": False}


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


@pytest.fixture
def pickled(tmp_path, marker) -> Path:
    """A run checkpoint (``.ckpt``) whose pickle runs the payload."""
    path = tmp_path / "evil" / "last.ckpt"
    path.parent.mkdir()
    torch.save({"state_dict": {}, "iqa_config": {"module": {}}, "rng_states": Payload(marker)}, path)
    return path


@pytest.fixture
def pickled_weights(tmp_path, marker) -> Path:
    """A weights file (``.pth``, a ``model`` entry) whose pickle runs the payload."""
    path = tmp_path / "evil_weights.pth"
    torch.save({"model": {"layer.weight": torch.zeros(2), "layer.bias": Payload(marker)}}, path)
    return path


@pytest.fixture
def foreign(compose_train, tmp_path, marker):
    """``make(module=..., data=...)``: a checkpoint in our format (it loads with
    ``weights_only=True``) of a real tiny model, with the given config nodes replaced."""
    cfg = compose_train("model=cnniqa")
    module = instantiate(cfg.module)
    config = OmegaConf.to_container(cfg, resolve=True)

    def make(name: str = "foreign.ckpt", **nodes: dict) -> Path:
        path = tmp_path / "foreign" / name
        path.parent.mkdir(exist_ok=True)
        torch.save({"state_dict": module.state_dict(), "iqa_config": {**config, **nodes}}, path)
        torch.load(path, weights_only=True)  # a weights-only-loadable file: only its config is hostile
        return path

    return make


def refusal(error: BaseException, kind: type[BaseException] = UntrustedCheckpointError) -> BaseException:
    """The ``kind`` error in ``error``'s chain (Hydra's instantiate wraps what a constructor raises)."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    found = [e for e in chain if isinstance(e, kind)]
    assert found, f"no {kind.__name__} in {[type(e).__name__ for e in chain]}: {chain[0]}"
    return found[0]


def assert_refused(excinfo: pytest.ExceptionInfo, path: Path, marker: Path, *words: str) -> None:
    message = str(refusal(excinfo.value))
    assert str(path) in message, message
    assert all(word in message for word in words), message
    assert not marker.exists(), "the payload ran"


# -- the files are real: loaded the unsafe way, they do run ------------------------------------
def test_the_payloads_run_when_loaded_unsafely(pickled, marker):
    torch.load(pickled, weights_only=False)
    assert marker.exists()
    marker.unlink()
    instantiate(OmegaConf.create(touch_config(marker)))
    assert marker.exists()
    marker.unlink()
    instantiate(OmegaConf.create(torch_load_config(pickled)))
    assert marker.exists()


# -- (1) pickled payloads -----------------------------------------------------------------------
def test_eval_refuses_a_pickled_payload(pickled, marker, compose_train):
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        evaluate(compose_train(f"ckpt_path={pickled}", name="eval"))
    assert_refused(excinfo, pickled, marker, "weights_only=True")


def test_eval_images_refuses_a_pickled_payload(pickled, marker, compose_train, data_dir):
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        evaluate(compose_train(f"ckpt_path={pickled}", f"images={data_dir}", name="eval"))
    assert_refused(excinfo, pickled, marker)


def test_load_scorer_refuses_a_pickled_payload(pickled, marker):
    import iqa

    for load in (load_scorer, iqa.load_scorer):
        with pytest.raises(UntrustedCheckpointError) as excinfo:
            load(pickled, device="cpu")
        assert_refused(excinfo, pickled, marker)


def test_resume_refuses_a_pickled_payload(pickled, marker, compose_train):
    """``train.py ckpt_path=``: Lightning reads through SafeCheckpointIO (weights_only=True)."""
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        train(compose_train("model=cnniqa", f"ckpt_path={pickled}", "trainer.limit_val_batches=1"))
    assert_refused(excinfo, pickled, marker)


def test_qmamba_init_from_refuses_a_pickled_payload(pickled, marker, compose_train):
    with pytest.raises(Exception) as excinfo:  # noqa: PT011 - wrapped by Hydra's instantiate
        train(compose_train(*QMAMBA, f"model.init_from={pickled}"))
    assert_refused(excinfo, pickled, marker)


def test_model_checkpoint_refuses_a_pickled_payload(pickled_weights, marker, compose_train):
    with pytest.raises(Exception) as excinfo:  # noqa: PT011 - wrapped by Hydra's instantiate
        train(compose_train(*QMAMBA, f"model.weights={pickled_weights}"))
    assert_refused(excinfo, pickled_weights, marker)
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        create_model("loda", **LODA_TINY, weights=str(pickled_weights))
    assert_refused(excinfo, pickled_weights, marker)


def test_model_pretrained_refuses_a_pickled_payload(pickled_weights, marker, compose_train):
    """A timm baseline's ``model.pretrained`` weights file."""
    with pytest.raises(Exception) as excinfo:  # noqa: PT011 - wrapped by Hydra's instantiate
        train(compose_train(f"model.pretrained={pickled_weights}"))
    assert_refused(excinfo, pickled_weights, marker)


def test_eval_cli_refuses_a_pickled_payload(pickled, marker, tmp_path):
    """A real ``python eval.py`` process."""
    result = subprocess.run(
        [sys.executable, "eval.py", f"ckpt_path={pickled}", f"hydra.run.dir={tmp_path / 'cli'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )
    assert result.returncode != 0
    assert "UntrustedCheckpointError" in result.stderr and str(pickled) in result.stderr, result.stderr[-3000:]
    assert not marker.exists()


# -- (2) weights-only checkpoints whose config names foreign targets ---------------------------
def test_eval_refuses_a_foreign_module_target(foreign, marker, compose_train):
    path = foreign(module=touch_config(marker))
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        evaluate(compose_train(f"ckpt_path={path}", name="eval"))
    assert_refused(excinfo, path, marker, "pathlib.Path.touch")


def test_eval_refuses_a_foreign_data_target(foreign, pickled, marker, compose_train):
    """A legitimate module, and a data node reaching ``torch.load`` through an ``iqa.`` module."""
    path = foreign(data=torch_load_config(pickled))
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        evaluate(compose_train(f"ckpt_path={path}", name="eval"))
    assert_refused(excinfo, path, marker, "iqa.checkpoint.torch.load")


def test_eval_images_and_load_scorer_refuse_nested_foreign_targets(foreign, marker, compose_train, data_dir):
    config = OmegaConf.to_container(compose_train("model=cnniqa").module, resolve=True)
    config["net"]["model"]["_target_"] = "iqa.experiment.train"  # a function of the project: refused too
    path = foreign(module=config)
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        evaluate(compose_train(f"ckpt_path={path}", f"images={data_dir}", name="eval"))
    assert_refused(excinfo, path, marker, "iqa.experiment.train")
    nested = foreign("nested.ckpt", module={**config, "net": {**config["net"], "model": touch_config(marker)}})
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        load_scorer(nested, device="cpu")
    assert_refused(excinfo, nested, marker, "pathlib.Path.touch")


def test_a_config_given_as_yaml_text_is_refused(foreign, marker):
    """OmegaConf would parse a string node as YAML, out of the checker's sight."""
    path = foreign(module=OmegaConf.to_yaml(touch_config(marker)))
    with pytest.raises(UntrustedCheckpointError) as excinfo:
        load_scorer(path, device="cpu")
    assert_refused(excinfo, path, marker)


def test_qmamba_init_from_never_instantiates_a_foreign_config(foreign, marker):
    path = foreign(model=touch_config(marker))
    with pytest.raises(Exception, match="not of QMamba") as excinfo:
        create_model("qmamba", **QMAMBA_TINY, init_from=str(path))
    assert str(path) in str(excinfo.value) and not marker.exists()


def test_resume_never_instantiates_the_checkpoint_config(foreign, marker, compose_train):
    """Resuming builds everything from the command's config; the stored one is only data."""
    path = foreign(module=touch_config(marker), data=touch_config(marker))
    with pytest.raises(Exception):  # noqa: B017, PT011 - a bare state dict cannot resume a run
        train(compose_train("model=cnniqa", f"ckpt_path={path}", "trainer.limit_val_batches=1"))
    assert not marker.exists()


@pytest.mark.parametrize("target, allowed", [
    ("iqa.training.module.IQAModule", True),
    ("iqa.data.datamodule.IQADataModule", True),
    ("iqa.data.protocol.SplitProtocol", True),
    ("iqa.training.optim.OptimizerSpec", True),
    ("iqa.training.losses.WeightedLoss", True),
    ("iqa.checkpoint.torch.load", False),  # an iqa. path, torch's function
    ("iqa.checkpoint.Path", False),  # an iqa. path, pathlib's class
    ("iqa.training.module.nn.Linear", False),  # a module class, not the project's
    ("iqa.experiment.train", False),  # the project's, but a function
    ("iqa.training.callbacks.BestCheckpoint", False),  # the project's, not a model/data/spec class
    ("os.system", False),
    ("builtins.eval", False),
    ("iqa_elsewhere.Model", False),
    (42, False),
])
def test_allow_list(target, allowed, tmp_path):
    config = {"module": {"_target_": "iqa.training.module.IQAModule", "net": {"layers": [{"_target_": target}]}}}
    if allowed:
        check_config_targets(config, tmp_path / "x.ckpt")
    else:
        with pytest.raises(UntrustedCheckpointError, match=r"x\.ckpt.*_target_="):
            check_config_targets(config, tmp_path / "x.ckpt")
    assert issubclass(UntrustedCheckpointError, CheckpointError)


def test_every_configured_model_and_data_target_is_allowed():
    """The allow-list fits every class ``conf/`` builds inside a module or data node."""
    import re

    targets = {t for f in (ROOT / "conf").rglob("*.yaml") for t in re.findall(r"_target_:\s*(\S+)", f.read_text())}
    callbacks = ("iqa.training.callbacks.", "iqa.training.progress.", "iqa.training.loggers.", "iqa.run_", "iqa.cli.")
    kept = {t for t in targets if not t.startswith(callbacks)}
    assert kept, targets
    check_config_targets({"nodes": [{"_target_": t} for t in sorted(kept)]}, "conf/")
