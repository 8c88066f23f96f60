"""Experiment loggers: CSV (default), TensorBoard, and W&B that never hangs offline."""

from __future__ import annotations

import logging
import netrc
import os
import socket
import threading
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

log = logging.getLogger(__name__)

__all__ = ["CSVLogger", "TensorBoardLogger", "WandbLogger", "wandb_credentials_available"]


def wandb_credentials_available() -> bool:
    """True when an API key is in the environment or in ``~/.netrc``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_reachable(host: str = "api.wandb.ai", timeout: float = 3.0) -> bool:
    """True when a TCP connection to the W&B server opens within ``timeout`` seconds in total.

    Socket timeouts do not cover the DNS lookup, which can hang for minutes on a compute
    node without a resolver, so the probe runs in a daemon thread that is abandoned at the
    deadline.
    """
    opened: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, name="wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    reachable = bool(opened)
    if not reachable:
        log.warning("W&B: no connection to %s:443 within %g s", host, timeout)
    return reachable


class WandbLogger(_LightningWandbLogger):
    """Lightning's W&B logger, switched to offline mode when no API key is configured or
    the server cannot be reached (``WANDB_MODE=offline`` also forces it), so a run never
    hangs on the network; sync later with ``wandb sync <run dir>/wandb``."""

    def __init__(self, offline: bool | None = None, **kwargs) -> None:
        if offline is None:
            offline = (
                os.environ.get("WANDB_MODE") == "offline" or not wandb_credentials_available() or not wandb_reachable()
            )
        if offline:
            log.info("W&B: logging offline (no API key or no connection); sync later with `wandb sync`")
        super().__init__(offline=offline, **kwargs)
