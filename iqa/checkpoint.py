"""Rebuild a trained module from its checkpoint: the config inside rebuilds the frozen
parts (from their pretrained sources), the checkpoint supplies the trained tensors."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from iqa.training.module import IQAModule


class CheckpointError(ValueError):
    """An unreadable checkpoint or one without the config it was trained with."""


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file written by ``train.py`` (a trusted file: it holds RNG states)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/<name>.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise CheckpointError(f"checkpoint {path} cannot be read ({error}); is the file complete?") from error
    if not isinstance(checkpoint, dict) or not checkpoint.get("iqa_config"):
        raise CheckpointError(f"{path} is not an iqa checkpoint (no 'iqa_config' inside); train it with train.py")
    return checkpoint


def load_module(path: str | Path) -> tuple[IQAModule, dict]:
    """The trained :class:`IQAModule` (eval mode) and the resolved config it was trained with."""
    checkpoint = read_checkpoint(path)
    config = checkpoint["iqa_config"]
    module: IQAModule = instantiate(OmegaConf.create(config["module"]))
    module.load_state_dict(checkpoint["state_dict"])
    module.run_config = config
    return module.eval(), config
