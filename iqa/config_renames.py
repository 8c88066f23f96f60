"""Config keys and options that were renamed or removed, in one table (README.md#changelog).

``train.py`` / ``eval.py`` refuse an old key or option on the command line, naming the new one,
before Hydra composes (:func:`check_overrides`); the config stored in a checkpoint written before
a rename is upgraded through the same table (:func:`upgrade_stored_config`), so it still loads.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from iqa.errors import ConfigurationError

CHANGELOG = "README.md#changelog"
# model= options → their class, for the renames that concern some models only.
MODEL_TARGETS = {
    "loda": "iqa.models.methods.loda.LoDa",
    "qmamba": "iqa.models.methods.qmamba.QMamba",
    "vp_mplug": "iqa.models.methods.vp_mplug.VisualPromptMplugOwl2",
    "vp_mllm": "iqa.models.methods.vp_mllm.VisualPromptMLLM",
}


@dataclass(frozen=True)
class Rename:
    """``old`` (a key, or a ``group=option``) became ``new`` (``None``: removed); ``note`` says what it is."""

    old: str
    new: str | None
    note: str
    models: tuple[str, ...] = ()  # the model= options it concerns; () = every model
    upgrade: Callable[[dict, Rename], None] | None = None  # rewrites a stored config; None: moves old → new


def _parents(config: dict) -> Iterator[dict]:
    """The stored config and its pipeline node (``module.net``): both hold ``model`` and ``prompt``
    (an untrusted file may hold anything: other shapes are left to the checks that refuse them)."""
    if isinstance(config, dict):
        yield config
        module = config.get("module")
        if isinstance(module, dict) and isinstance(module.get("net"), dict):
            yield module["net"]


def _nodes(config: dict, rename: Rename) -> Iterator[dict]:
    """The nodes of ``rename.old``'s group (``model``, ``data``, ``prompt``) that it concerns."""
    group = rename.old.split("=")[0].split(".")[0]
    targets = {MODEL_TARGETS[name] for name in rename.models}
    for parent in _parents(config):
        node, model = parent.get(group), parent.get("model")
        if isinstance(node, dict) and (not targets or isinstance(model, dict) and model.get("_target_") in targets):
            yield node


def _move(config: dict, rename: Rename) -> None:
    old, new = rename.old.split(".", 1)[1], rename.new.split(".", 1)[1]
    for node in _nodes(config, rename):
        if old in node:
            node[new] = node.pop(old)


def _drop(config: dict, rename: Rename) -> None:
    for node in _nodes(config, rename):
        node.pop(rename.old.split(".", 1)[1], None)


def _root_to_roots(config: dict, rename: Rename) -> None:
    for node in _nodes(config, rename):
        root = node.pop("root", None)
        names = [*(node.get("datasets") or []), *(node.get("test_on") or [])]
        if root is not None and names:  # it was the folder of the first dataset
            node["roots"] = {**(node.get("roots") or {}), names[0]: root}


def _split_prompt_text(config: dict, rename: Rename) -> None:
    from iqa.models.methods.quality_readout import IMAGE_PLACEHOLDER, mplug_owl2_text  # torch: only when needed

    for node in _nodes(config, rename):
        text = node.pop("prompt_text", None)
        if text is None:
            continue
        head, _, prefix = text.rpartition("ASSISTANT:")
        question = head.removeprefix("USER: ")
        question = question if question.endswith("\n") else question.removesuffix(" ")
        prefix = prefix.removeprefix(" ")
        if question.count(IMAGE_PLACEHOLDER) != 1 or mplug_owl2_text(question, prefix) != text:
            raise ConfigurationError(f"model.prompt_text={text!r} of this checkpoint is not of the form "
                                     "'USER: <question> ASSISTANT: <answer prefix>', so it has no model.question "
                                     f"and model.answer_prefix. See {CHANGELOG}.")
        node["question"], node["answer_prefix"] = question, prefix


def _linear_probe_to_tuning(config: dict, rename: Rename) -> None:
    for parent in _parents(config):
        prompt = parent.get("prompt")
        if (isinstance(prompt, dict) and prompt.get("_target_") == "iqa.models.prompts.LinearProbe"
                and isinstance(parent.get("model"), dict)):
            parent["prompt"] = None
            parent["model"]["tuning"] = "linear_probe"


RENAMES = (
    Rename("model.vit", "model.size", "LoDa's ViT: tiny | small | base or a timm ViT name, as vit/swin/qmamba call it",
           ("loda",)),
    Rename("model.checkpoint", "model.weights", "a full state dict with the official key names", ("qmamba", "loda")),
    Rename("model.checkpoint", "model.hf_folder", "a local folder, or the id of one already in the HF cache",
           ("vp_mplug",)),
    Rename("model.hf_id", "model.hf_folder", "a local folder, or the id of one already in the HF cache",
           ("vp_mllm",)),
    Rename("model.prompt_text", "model.question + model.answer_prefix",
           "as vp_mllm; the question holds <|image|>, the mPLUG-Owl2 template is built around them", ("vp_mplug",),
           _split_prompt_text),
    Rename("data.root", "data.roots.<dataset>", "one key for dataset folders, e.g. data.roots.koniq=/x",
           upgrade=_root_to_roots),
    Rename("prompt.image_size", None, "the pipeline takes the size from data.crop_size", upgrade=_drop),
    Rename("prompt=linear_probe", "model.tuning=linear_probe", "a way to tune the model, not a prompt",
           upgrade=_linear_probe_to_tuning),
)


def upgrade_stored_config(config: dict) -> dict:
    """A copy of a checkpoint's stored (resolved) config with every old key renamed."""
    config = copy.deepcopy(config)
    for rename in RENAMES:
        (rename.upgrade or _move)(config, rename)
    return config


def _matches(rename: Rename, key: str, value: str | None) -> bool:
    old_key, is_option, option = rename.old.partition("=")
    if is_option:
        return key == old_key and value is not None and option in value.split(",")
    return key == old_key


def _message(found: list[Rename]) -> str:
    old = found[0].old
    if found[0].new is None:
        return f"{old} was removed ({found[0].note}). See {CHANGELOG}."
    news = [f"{r.new} ({'model=' + '|'.join(r.models) + ': ' if r.models else ''}{r.note})" for r in found]
    return f"{old} was renamed to {' or '.join(news)}. See {CHANGELOG}."


def check_overrides(overrides: list[str]) -> None:
    """Raise :class:`ConfigurationError` naming the new key when a command-line override
    (``key=value``, ``+key=``, ``~key``, ``group=option``) uses an old one; renames that concern
    some models only count when no ``model=`` override names another model."""
    parsed = []
    for override in overrides:
        if not override.startswith("-"):
            key, has_value, value = override.lstrip("+~").partition("=")
            parsed.append((key, value if has_value else None))
    models = {name for key, value in parsed if key == "model" and value for name in value.split(",")}
    for key, value in parsed:
        found = [r for r in RENAMES
                 if _matches(r, key, value) and (not r.models or not models or models & set(r.models))]
        if found:
            raise ConfigurationError(_message(found))
