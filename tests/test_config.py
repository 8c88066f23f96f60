"""Every option of every config group composes, and bad values fail before training."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.utils import instantiate

from tests.conftest import CONF

GROUPS = ["model", "prompt", "data", "protocol", "trainer", "logger", "callbacks", "loss", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml")) if not p.stem.startswith("_")]
# presets with `???` values that the user must supply on the command line
REQUIRED = {("protocol", "split_file"): ["protocol.split_file=/splits.csv"]}


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_resolves(compose_train, group, option):
    from omegaconf import OmegaConf

    cfg = compose_train(f"{group}={option}", *REQUIRED.get((group, option), []))
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert container["module"]["net"]["input_size"] == container["data"]["crop_size"]


@pytest.mark.parametrize("option", [o for g, o in OPTIONS if g == "model"])
def test_model_option_is_the_registered_model_of_that_name(option):
    """One name per model: ``model=<name>`` configures the class that ``create_model("<name>")`` builds."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from iqa.registry import create_model, list_models

    node = OmegaConf.load(CONF / "model" / f"{option}.yaml")
    assert option in list_models()
    if option in ("vp_mplug", "vp_mllm"):  # they need a model folder: both ask for it with the class's message
        from iqa.errors import ConfigurationError

        for build in (lambda: create_model(option, hf_folder=None), lambda: get_class(node._target_)(hf_folder=None)):
            with pytest.raises(ConfigurationError, match=f"model={option} needs model.hf_folder="):
                build()
        return
    arguments = {k: v for k, v in OmegaConf.to_container(node).items() if k != "_target_"}
    with torch.device("meta"):
        assert type(create_model(option)) is get_class(node._target_)
        assert type(create_model(option, **arguments)) is get_class(node._target_)


def test_unknown_model_names_the_group_and_choices(compose_train):
    with pytest.raises(ConfigCompositionException, match="model/no_such_model"):
        compose_train("model=no_such_model")


def test_unknown_key_is_refused(compose_train):
    with pytest.raises(ConfigCompositionException, match="data.crop_sise"):
        compose_train("data.crop_sise=3")


def test_prompt_needing_a_fixed_size_refuses_whole_images(compose_train):
    cfg = compose_train("prompt=padding", "data.crop_size=null", "data.n_test_crops=1")
    with pytest.raises(InstantiationException, match="needs a fixed input size but data.crop_size is null"):
        instantiate(cfg.module)


def test_model_with_fixed_input_size_refuses_another_crop(compose_train):
    cfg = compose_train("model=vit", "model.size=tiny", "data.crop_size=64")
    with pytest.raises(InstantiationException, match="needs 224x224 inputs but data.crop_size=64"):
        instantiate(cfg.module)


def test_slurm_launcher_composes_one_task_per_gpu(compose_train):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert "submitit" in launcher._target_ and launcher.tasks_per_node == 4 and launcher.gpus_per_node == 4


def test_wandb_goes_offline_without_credentials(tmp_path, monkeypatch):
    from iqa.training.loggers import WandbLogger

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    logger = WandbLogger(save_dir=str(tmp_path), project="iqa")
    assert logger._offline
