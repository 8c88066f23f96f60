"""Weights files: read them safely, and check that they fit a module — the one place every
loader (pretrained backbones, VMamba and LoDa checkpoints, mPLUG-Owl2 folders, training runs)
goes through.

* :func:`load_weights_only` is ``torch.load(weights_only=True)`` with errors that name the file:
  pickled code is refused, a truncated file is reported with a readable one beside it.
* :func:`read_state_dict` reads ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` state dicts.
* :class:`KeyDiff` compares a state dict with what a module expects; :meth:`KeyDiff.check`
  raises the one :class:`WeightsMismatchError`, naming the file, the keys and the fix.
* :func:`read_trained_weights` returns the tensors a ``train.py`` run trained, by sub-module,
  so no model needs to know the layout of a run's checkpoint.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from iqa.errors import UserError

SHOWN_KEYS = 5
MAX_SIBLINGS_TRIED = 5


class CheckpointError(UserError, ValueError):
    """An unreadable checkpoint or one without the config it was trained with."""

    doc = "docs/reliability.md"


class UnreadableCheckpointError(CheckpointError):
    """A truncated or damaged checkpoint file (e.g. a write cut short by a kill or a full disk)."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that would run code when loaded: pickled objects other than tensors and
    plain containers, or a config naming a callable outside this project's allow-list."""


def readable_sibling(path: Path) -> Path | None:
    """Another file of ``path``'s kind in its folder that loads (newest first), if any."""
    siblings = [p for p in path.parent.glob(f"*{path.suffix}") if p.is_file() and p.name != path.name]
    for sibling in sorted(siblings, key=lambda p: p.stat().st_mtime, reverse=True)[:MAX_SIBLINGS_TRIED]:
        try:
            torch.load(sibling, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any failure: not a usable alternative
            continue
        return sibling
    return None


def _refused_object(error: pickle.UnpicklingError) -> str | None:
    """What ``torch.load(weights_only=True)`` refused to unpickle, or ``None`` for another failure."""
    message = str(error)
    if "Weights only load failed" not in message:
        return None
    reasons = [line.strip() for line in message.splitlines() if "Unsupported" in line or "WeightsUnpickler" in line]
    if not reasons:
        return "an object that is not a tensor or a plain container"
    return reasons[0].split(" was not an allowed global")[0].removeprefix("WeightsUnpickler error: ")[:300]


def load_weights_only(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers, never code.

    Raises :class:`UntrustedCheckpointError` for a file holding other pickled objects, and
    :class:`UnreadableCheckpointError` for a truncated or damaged one; both name the file (the
    latter also a readable checkpoint beside it, if there is one).
    """
    path = Path(path).expanduser()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except pickle.UnpicklingError as error:
        refused = _refused_object(error)
        if refused is not None:
            raise UntrustedCheckpointError(
                f"{path} holds pickled objects other than tensors and plain containers, which could run code "
                f"when loaded; it is refused (only weights are read, with weights_only=True): {refused}"
            ) from None
        damage = error
    except Exception as error:  # noqa: BLE001 - EOFError, zip reader errors, …: all mean a damaged file
        damage = error
    sibling = readable_sibling(path)
    hint = f"{sibling.name} beside it is readable: {sibling}" if sibling else "no readable checkpoint is beside it"
    raise UnreadableCheckpointError(
        f"checkpoint {path} is truncated or damaged ({type(damage).__name__}: {str(damage)[:200]}), "
        f"e.g. by a write cut short; {hint}"
    ) from damage


class PretrainedWeightsError(UserError, FileNotFoundError):
    """Requested weights that are not on this machine (weights that do not fit: :class:`WeightsMismatchError`)."""

    doc = "docs/weights_and_data.md#weights"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file, unwrapping a
    checkpoint's ``model`` / ``state_dict`` entry (read with ``weights_only=True``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"weights file {path} does not exist; fix model.pretrained "
                                     "(docs/weights_and_data.md#weights)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = load_weights_only(path)  # a pickled payload or a truncated file: an error naming the file
    for key in ("model", "state_dict", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


class WeightsMismatchError(UserError, ValueError):
    """Weights whose tensor names or shapes do not fit the module they are loaded into."""

    doc = "docs/weights_and_data.md#weights"


@dataclass(frozen=True)
class KeyDiff:
    """How a state dict differs from what a module expects: keys it lacks, keys the module
    does not have, and keys of another shape (``"key (file shape) vs (module shape)"``)."""

    missing: list[str]
    unexpected: list[str]
    wrong_shape: list[str]

    @classmethod
    def of(cls, found: Mapping[str, Any], expected: Mapping[str, Any], may_miss: Iterable[str] = ()) -> KeyDiff:
        """Compare ``found`` with ``expected`` (both name → tensor, shape or ``None`` when only
        names are known); names in ``may_miss`` may be absent from ``found``."""
        allowed = set(may_miss)
        shapes = {k: _shape(v) for k, v in found.items()}
        own = {k: _shape(v) for k, v in expected.items()}
        return cls(
            missing=sorted(k for k in own if k not in shapes and k not in allowed),
            unexpected=sorted(k for k in shapes if k not in own),
            wrong_shape=[f"{k} {shapes[k]} vs {own[k]}" for k in sorted(shapes) if k in own
                         and None not in (shapes[k], own[k]) and shapes[k] != own[k]],
        )

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def describe(self) -> str:
        def listed(keys: list[str]) -> str:
            return f"{keys[:SHOWN_KEYS]}{'…' if len(keys) > SHOWN_KEYS else ''}"

        return (f"{len(self.missing)} missing {listed(self.missing)}, {len(self.unexpected)} unexpected "
                f"{listed(self.unexpected)}, {len(self.wrong_shape)} of another shape (file vs module) "
                f"{listed(self.wrong_shape)}")

    def check(self, source: str, target: str, fix: str) -> None:
        """Raise :class:`WeightsMismatchError` when there is a difference."""
        if self:
            raise WeightsMismatchError(f"{source} does not fit {target}: {self.describe()}; {fix}")


def _shape(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


class TrainedWeights(NamedTuple):
    """What a ``train.py`` run trained: its model class and tensors keyed inside the scoring
    pipeline (``model.backbone.…``, ``prompt.…``)."""

    model_target: str
    tensors: dict[str, torch.Tensor]

    def of(self, submodule: str) -> dict[str, torch.Tensor]:
        """The tensors of ``submodule`` (e.g. ``"model.backbone"``), keyed relative to it."""
        prefix = f"{submodule}."
        return {key[len(prefix):]: value for key, value in self.tensors.items() if key.startswith(prefix)}


RUN_STATE_PREFIX = "net."  # IQAModule.net: the scoring pipeline


def read_trained_weights(path: str | Path) -> TrainedWeights:
    """The trained tensors of a ``train.py`` checkpoint (read as weights only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass <run dir>/checkpoints/<name>.ckpt")
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict) or not checkpoint.get("iqa_config") or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not an iqa checkpoint (no 'iqa_config' inside); train it with train.py")
    tensors = {key[len(RUN_STATE_PREFIX):]: value for key, value in checkpoint["state_dict"].items()
               if key.startswith(RUN_STATE_PREFIX)}
    return TrainedWeights(str(checkpoint["iqa_config"]["model"]["_target_"]), tensors)
