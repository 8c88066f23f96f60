"""Build mPLUG-Owl2 from an official checkpoint folder (offline; nothing is downloaded).

The folder holds the official ``config.json`` and the weights under the official key names:
sharded files listed by ``model.safetensors.index.json`` / ``pytorch_model.bin.index.json``, or,
without an index, its ``*.safetensors`` files whose tensors all live under ``model.``/``lm_head.``
(other tensor files, such as a fixture's inputs, are skipped), else its ``pytorch_model*.bin``
files. ``.bin`` files are read with ``weights_only=True``.

Loading is strict: after dropping the stale ``rotary_emb.inv_freq`` buffers (transformers 4.31
saved them; the rotary table is recomputed here), the checkpoint's keys must equal the model's.
The model is built on the ``meta`` device and the checkpoint tensors are assigned to it one file
at a time, so the 7B model never exists twice in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from iqa.models.base import mark_weights_loaded
from iqa.models.mplug_owl2.configuration import MplugOwl2Config
from iqa.models.mplug_owl2.model import MplugOwl2ForCausalLM
from iqa.models.weights import KeyDiff, PretrainedWeightsError, read_state_dict

STALE_KEY_SUFFIX = "rotary_emb.inv_freq"
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
MODEL_KEY_PREFIXES = ("model.", "lm_head.")


def load_mplug_owl2(
    folder: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
    gradient_checkpointing: bool = False,
) -> MplugOwl2ForCausalLM:
    """mPLUG-Owl2 (LLaMA-2) with the weights of ``folder``, in eval mode.

    Args:
        folder: official checkpoint folder (``config.json`` and weights, see the module docstring).
        dtype: floating-point type of the weights (``torch.bfloat16`` for the 7B on a GPU).
        device: where the weights go.
        attn_implementation: ``"sdpa"`` (fused kernels) or ``"eager"`` (the official arithmetic).
        gradient_checkpointing: recompute layer activations in backward (vision tower,
            abstractor, LLM), to train e.g. a pixel prompt through the frozen model.
    """
    folder = Path(folder).expanduser()
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise PretrainedWeightsError(f"{config_file} does not exist; expected an official mPLUG-Owl2 folder "
                                     "(docs/weights_and_data.md#mplug-owl2)")
    config = MplugOwl2Config.from_file(config_file, attn_implementation)
    with torch.device("meta"):
        model = MplugOwl2ForCausalLM(config)
    expected = set(model.state_dict())

    files = weight_files(folder)
    found: set[str] = set()
    for file in files:
        tensors = {key: value for key, value in read_state_dict(file).items() if not key.endswith(STALE_KEY_SUFFIX)}
        found |= tensors.keys()
        tensors = {key: value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
                   for key, value in tensors.items() if key in expected}
        model.load_state_dict(tensors, strict=False, assign=True)
    _check_keys(expected, found, folder, files)
    mark_weights_loaded(model)

    with torch.device(device):  # not in the checkpoint: recompute the (float32) rotary table
        model.model.rotary_emb = LlamaRotaryEmbedding(config.text)
    model.set_gradient_checkpointing(gradient_checkpointing)
    return model.eval()


def weight_files(folder: Path) -> list[Path]:
    """The files holding the checkpoint's tensors (see the module docstring)."""
    for name in INDEX_FILES:
        if (folder / name).is_file():
            weight_map = json.loads((folder / name).read_text())["weight_map"]
            return [folder / file for file in sorted(set(weight_map.values()))]
    files = [file for file in sorted(folder.glob("*.safetensors")) if _holds_model_tensors(file)]
    files = files or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise PretrainedWeightsError(
            f"no mPLUG-Owl2 weights in {folder}: expected {' or '.join(INDEX_FILES)} with its shards, "
            "*.safetensors files with model.*/lm_head.* tensors, or pytorch_model*.bin "
            "(docs/weights_and_data.md#mplug-owl2)")
    return files


def _holds_model_tensors(file: Path) -> bool:
    with safe_open(file, framework="pt") as tensors:
        return all(key.startswith(MODEL_KEY_PREFIXES) for key in tensors.keys())


def _check_keys(expected: set[str], found: set[str], folder: Path, files: list[Path]) -> None:
    KeyDiff.of(dict.fromkeys(found), dict.fromkeys(expected)).check(
        f"checkpoint {folder} (files: {', '.join(file.name for file in files)})",
        "mPLUG-Owl2 built from its config.json",
        "is it an official mPLUG-Owl2 (LLaMA-2) folder? (docs/weights_and_data.md#mplug-owl2)")
