"""A timm-style model registry: ``register_model`` / ``create_model`` / ``list_models``.

Every architecture file registers its public constructors, so a method issue only
adds files. A registered constructor returns an :class:`iqa.models.base.IQAModel`.
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
    import importlib

    for module in _MODULES_WITH_MODELS:
        importlib.import_module(module)


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
