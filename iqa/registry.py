"""A timm-style model registry: ``register_model`` / ``create_model`` / ``list_models``.

Every architecture file registers its public constructors; every module of the model
packages is imported on first use, so a new method is one new file (no list to edit). A
registered constructor returns an :class:`iqa.models.base.IQAModel`. Configs name the same
classes by their path (``_target_``), so a reader finds the code from the config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch.nn as nn

_MODEL_CONSTRUCTORS: dict[str, Callable[..., nn.Module]] = {}
_MODULES_WITH_MODELS = (
    "iqa.models.baselines",
    "iqa.models.methods",
)

Constructor = TypeVar("Constructor", bound=Callable[..., nn.Module])


def register_model(name: str | None = None) -> Callable[[Constructor], Constructor]:
    """Register a class or factory function under ``name`` (default: its ``__name__``)."""

    def decorator(constructor: Constructor) -> Constructor:
        key = name or constructor.__name__
        if key in _MODEL_CONSTRUCTORS and _MODEL_CONSTRUCTORS[key] is not constructor:
            raise ValueError(f"model name {key!r} is already registered by {_MODEL_CONSTRUCTORS[key]!r}")
        _MODEL_CONSTRUCTORS[key] = constructor
        return constructor

    return decorator


def _import_model_modules() -> None:
    """Import every module of the model packages (their decorators register the models)."""
    import importlib
    import pkgutil

    for package_name in _MODULES_WITH_MODELS:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__, prefix=f"{package_name}."):
            importlib.import_module(module.name)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    _import_model_modules()
    return sorted(_MODEL_CONSTRUCTORS)


def create_model(name: str, /, **kwargs) -> nn.Module:
    """Build the registered model ``name``; ``kwargs`` (which may hold a ``name`` of their own) go
    to its constructor."""
    _import_model_modules()
    if name not in _MODEL_CONSTRUCTORS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_MODEL_CONSTRUCTORS))}")
    return _MODEL_CONSTRUCTORS[name](**kwargs)
