"""One description per benchmark, registered by short name (``kadid``, ``koniq``, …)."""

from __future__ import annotations

from pathlib import Path

from iqa.data.datasets import (  # noqa: F401  (imported to register the descriptions)
    agiqa,
    aigciqa2023,
    biq2021,
    csiq,
    flive,
    kadid,
    koniq,
    live,
    livec,
    spaq,
    synthetic,
    tid2013,
)
from iqa.data.datasets.base import _DESCRIPTIONS, DatasetDescription, DatasetError, register_dataset


def dataset_names() -> list[str]:
    """Short names of all registered descriptions."""
    return sorted(_DESCRIPTIONS)


def build_description(name: str, data_dir: str | Path, root: str | Path | None = None) -> DatasetDescription:
    """The description ``name`` rooted at ``root`` or ``data_dir/<its default folder>``."""
    if name not in _DESCRIPTIONS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(dataset_names())}")
    cls = _DESCRIPTIONS[name]
    return cls(root=root if root is not None else Path(data_dir) / cls.default_folder)


__all__ = ["DatasetDescription", "DatasetError", "build_description", "dataset_names", "register_dataset"]
