"""Shared fixtures: real Hydra composition of conf/ and the generated synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
FIXTURES = ROOT.parent / "shared" / "fixtures"

# Small, fast settings for end-to-end runs on the 2-core CPU.
TINY_RUN = [
    "model=resnet18",
    "data.crop_size=32",
    "data.n_test_crops=2",
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "data.num_workers=0",
    "logger=csv",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "callbacks.progress_bar=null",
]


def compose_config(name: str, overrides: list[str], output_dir: Path, data_dir: Path) -> DictConfig:
    """Compose ``conf/<name>.yaml`` as Hydra's CLI would, with run paths in ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra  # as in a real run, where the task config has no hydra node
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.data_dir = str(data_dir)
    return cfg


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data root holding the generated synthetic benchmark (made once per session)."""
    from iqa.data.datasets import build_description

    root = tmp_path_factory.mktemp("data")
    build_description("synthetic", root).records()
    return root


@pytest.fixture
def compose_train(tmp_path, data_dir):
    def _compose(*overrides: str, name: str = "train") -> DictConfig:
        return compose_config(name, TINY_RUN + list(overrides) if name == "train" else list(overrides),
                              tmp_path / "run", data_dir)

    return _compose


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """Tiny random vision-language models saved as local folders (see iqa/models/tiny_vlms.py)."""
    from iqa.models.tiny_vlms import save_tiny_llava, save_tiny_mplug_owl2

    root = tmp_path_factory.mktemp("vlms")
    save_tiny_mplug_owl2(root / "mplug_owl2")
    save_tiny_llava(root / "llava")
    return root
