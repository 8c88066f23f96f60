"""Lightning's checkpoint reads and writes, made safe: whole files, weights only."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from iqa.atomic import atomic_write
from iqa.checkpoint import load_weights_only


def _is_local(path: Any) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _local(path: Any) -> Path:
    return Path(str(path).removeprefix("file://"))


class SafeCheckpointIO(TorchCheckpointIO):
    """A :class:`TorchCheckpointIO` whose files are always whole and never run code.

    * ``save_checkpoint`` serialises the checkpoint in memory (as Lightning does), writes a
      temporary file in the checkpoint's own folder, fsyncs it and ``os.replace``s it over the
      previous file (:func:`iqa.atomic.atomic_write`): a kill or a full disk leaves the previous
      good checkpoint, and the error (``OSError`` with its errno) propagates.
    * ``load_checkpoint`` (resume with ``ckpt_path=``, testing the best checkpoint) always
      reads with ``weights_only=True``, whatever Lightning asks, and turns a truncated or
      damaged file into a :class:`~iqa.checkpoint.UnreadableCheckpointError` naming it and a
      readable checkpoint beside it (:func:`iqa.checkpoint.load_weights_only`).

    Remote paths (``s3://`` …) keep Lightning's own writing, still read with ``weights_only=True``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()  # serialised first: a write error reaches the caller as an OSError (errno kept)
        torch.save(checkpoint, buffer)
        atomic_write(_local(path), lambda handle: handle.write(buffer.getbuffer()))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if not _is_local(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        if not _local(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        return load_weights_only(_local(path), map_location)
