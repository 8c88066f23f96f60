"""Strict JSON files: ``null`` for non-finite numbers (never ``NaN``/``Infinity``), written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from iqa.atomic import atomic_write_text


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN/±inf float (also NumPy floats, in dicts, lists, tuples) replaced by ``None``."""
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, dict):
        return {key: finite_or_none(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(value) for value in obj]
    return obj


def dumps(obj: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text of ``obj`` (non-finite floats as ``null``)."""
    return json.dumps(finite_or_none(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path: str | Path, obj: Any, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically: readers see the old file or the
    complete new one, never a half-written file (:func:`iqa.atomic.atomic_write`)."""
    text = dumps(obj, indent=indent, sort_keys=sort_keys) + "\n"  # fails before anything is written
    return atomic_write_text(path, text)
