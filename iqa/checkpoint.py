"""Rebuild a trained module from its checkpoint: the config inside rebuilds the frozen
parts (from their pretrained sources), the checkpoint supplies the trained tensors.

A checkpoint is data, never code: files are read with ``torch.load(weights_only=True)``
(tensors and plain containers only), and the config inside may only build this project's
own model, data and spec classes (:func:`check_config_targets`). A config stored before a key
was renamed is upgraded first (:mod:`iqa.config_renames`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from hydra._internal.utils import _locate  # the resolver instantiate itself uses
from hydra.utils import instantiate
from omegaconf import OmegaConf

from iqa.config_renames import upgrade_stored_config
from iqa.models.weights import (
    CheckpointError,
    UnreadableCheckpointError,
    UntrustedCheckpointError,
    load_weights_only,
    readable_sibling,
)

if TYPE_CHECKING:
    from iqa.training.module import IQAModule

__all__ = [
    "CheckpointError", "UnreadableCheckpointError", "UntrustedCheckpointError", "check_config_targets",
    "instantiate_checkpoint_config", "load_module", "load_weights_only", "read_checkpoint", "readable_sibling",
]

def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file written by ``train.py`` (weights only: see :func:`load_weights_only`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass ckpt_path=<run dir>/checkpoints/<name>.ckpt")
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict) or not checkpoint.get("iqa_config"):
        raise CheckpointError(f"{path} is not an iqa checkpoint (no 'iqa_config' inside); train it with train.py")
    return checkpoint


def _targets(node: Any) -> Iterator[Any]:
    """Every ``_target_`` value in a tree of dicts and lists."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _targets(value)


def is_allowed_target(target: Any) -> bool:
    """True for a class defined in the ``iqa`` package that is a module (``nn.Module``), a
    ``LightningDataModule`` or a dataclass spec. Nothing outside ``iqa`` is even imported."""
    from lightning.pytorch import LightningDataModule

    if not isinstance(target, str) or not target.startswith("iqa."):
        return False
    try:
        obj = _locate(target)
    except Exception:  # noqa: BLE001 - not importable: not allowed
        return False
    return (isinstance(obj, type) and obj.__module__.split(".")[0] == "iqa"
            and (issubclass(obj, (torch.nn.Module, LightningDataModule)) or dataclasses.is_dataclass(obj)))


def check_config_targets(config: Any, path: str | Path) -> None:
    """Refuse (:class:`UntrustedCheckpointError`) a checkpoint's config in which any
    ``_target_`` is not one of this project's model, data or spec classes."""
    config = OmegaConf.to_container(config) if OmegaConf.is_config(config) else config
    for target in _targets(config):
        if not is_allowed_target(target):
            raise UntrustedCheckpointError(
                f"checkpoint {path}: its config names _target_={target!r}, which is not a model, data or spec "
                "class of the iqa package; refused (a checkpoint's config may only build this project's classes)"
            )


def instantiate_checkpoint_config(config: Any, path: str | Path) -> Any:
    """``hydra.utils.instantiate`` of a node of a checkpoint's config, after :func:`check_config_targets`."""
    if not isinstance(config, dict):  # OmegaConf.create would parse a string as YAML, unchecked
        raise UntrustedCheckpointError(f"checkpoint {path}: a config node is a {type(config).__name__}, "
                                       "not a mapping; refused")
    check_config_targets(config, path)
    return instantiate(OmegaConf.create(config))


def load_module(path: str | Path) -> tuple[IQAModule, dict]:
    """The trained :class:`IQAModule` (eval mode) and the resolved config it was trained with
    (old keys renamed)."""
    checkpoint = read_checkpoint(path)
    config = upgrade_stored_config(checkpoint["iqa_config"])
    module: IQAModule = instantiate_checkpoint_config(config["module"], path)
    module.load_state_dict(checkpoint["state_dict"])
    module.run_config = config
    return module.eval(), config
