"""The W&B connectivity probe is bounded in total time, DNS lookup included (no network used)."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from iqa.training import loggers
from iqa.training.loggers import wandb_reachable


def hanging_lookup(*args, **kwargs):
    """A resolver that never answers in time, as on a compute node without DNS."""
    time.sleep(60)
    raise socket.gaierror("timed out")


def test_a_hanging_dns_lookup_gives_up_within_the_deadline(monkeypatch, caplog):
    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=loggers.__name__):
        assert wandb_reachable("api.wandb.ai", timeout=1.0) is False
    assert time.monotonic() - start < 5
    assert "no connection to api.wandb.ai:443 within 1 s" in caplog.text


def test_default_deadline_is_at_most_five_seconds(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    start = time.monotonic()
    assert wandb_reachable() is False
    assert time.monotonic() - start < 5.5


def test_a_refused_connection_is_unreachable_at_once(monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    start = time.monotonic()
    assert wandb_reachable(timeout=3.0) is False
    assert time.monotonic() - start < 2


def test_an_open_connection_is_reachable(monkeypatch):
    class Connection:
        def close(self) -> None:
            pass

    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: Connection())
    assert wandb_reachable() is True


@pytest.mark.parametrize("api_key", [None, "key"])
def test_wandb_logger_falls_back_to_offline(monkeypatch, tmp_path, caplog, api_key):
    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    if api_key:
        monkeypatch.setenv("WANDB_API_KEY", api_key)
    else:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(loggers._LightningWandbLogger, "__init__", lambda self, **kwargs: setattr(self, "kw", kwargs))
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger=loggers.__name__):
        logger = loggers.WandbLogger(project="iqa", save_dir=str(tmp_path))
    assert logger.kw["offline"] is True and time.monotonic() - start < 5.5
    assert "logging offline" in caplog.text
