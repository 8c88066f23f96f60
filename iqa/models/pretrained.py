"""Offline loading of pretrained weights: a local file, or a timm tag in the local HF cache.

Nothing is downloaded. When weights are asked for and absent, the error names the file to
place and where.
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torch.nn as nn

HEAD_PREFIXES = ("head.", "fc.", "classifier.", "head_dist.")


class PretrainedWeightsError(FileNotFoundError):
    """Requested weights that are not on this machine, or do not fit the model."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file, unwrapping a
    checkpoint's ``model`` / ``state_dict`` entry (read with ``weights_only=True``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"weights file {path} does not exist; fix model.pretrained")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def is_weights_file(source: str) -> bool:
    """True when ``source`` names a weights file rather than a timm tag."""
    return Path(source).suffix in WEIGHT_SUFFIXES


def timm_normalisation(timm_name: str, source: str | None) -> tuple[tuple, tuple]:
    """Mean and std of timm's pretrained config for ``source`` (a tag), or the
    architecture's default config when ``source`` is ``None`` or a file."""
    tag = None if source is None or is_weights_file(source) else source.removeprefix("timm/")
    name = timm_name if tag is None else (tag if "." in tag else f"{timm_name}.{tag}")
    config = timm.models.get_pretrained_cfg(name)
    if config is None:
        raise PretrainedWeightsError(f"model.pretrained={source!r}: timm knows no pretrained tag {name!r}")
    return tuple(config.mean), tuple(config.std)


def timm_cached_file(timm_name: str, tag: str) -> Path:
    """The local HF-cache file of timm's ``<timm_name>.<tag>`` weights (no download)."""
    from huggingface_hub import constants, try_to_load_from_cache

    full_name = tag if "." in tag or "/" in tag else f"{timm_name}.{tag}"
    full_name = full_name.removeprefix("timm/")
    config = timm.models.get_pretrained_cfg(full_name)
    if config is None:
        raise PretrainedWeightsError(f"model.pretrained={tag!r}: timm knows no pretrained tag {full_name!r}")
    repo_id = config.hf_hub_id or f"timm/{full_name}"
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo_id, filename)
        if isinstance(cached, str):
            return Path(cached)
    cache = os.environ.get("HF_HUB_CACHE", constants.HF_HUB_CACHE)
    raise PretrainedWeightsError(
        f"pretrained weights {repo_id} are not in the local Hugging Face cache ({cache}). On a machine with "
        f"internet run `huggingface-cli download {repo_id} model.safetensors` and copy the cache here, or pass "
        "model.pretrained=/path/to/model.safetensors"
    )


def load_pretrained(model: nn.Module, source: str, timm_name: str | None = None) -> None:
    """Load ``source`` (a file path, or a timm tag of ``timm_name``) into ``model``.

    Classifier-head tensors are dropped (the IQA head is new); any other missing,
    unexpected or mis-shaped key is an error naming the keys and the file.
    """
    is_file = is_weights_file(source)
    if not is_file and timm_name is None:
        raise PretrainedWeightsError(f"model.pretrained={source!r} is not a weights file path")
    path = Path(source).expanduser() if is_file else timm_cached_file(timm_name, source)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(HEAD_PREFIXES)}
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not k.startswith(HEAD_PREFIXES))
    unexpected = sorted(k for k in state if k not in own)
    mis_shaped = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if missing or unexpected or mis_shaped:
        raise PretrainedWeightsError(
            f"weights in {path} do not fit {type(model).__name__}: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shape {mis_shaped[:5]}; are they for another architecture or input size?"
        )
    model.load_state_dict(state, strict=False)
