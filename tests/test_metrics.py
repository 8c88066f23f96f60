"""Image-level metrics: values, deduplication, logistic fit, and exactness on 2 gloo ranks."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy import stats
from torch.utils.data import DistributedSampler

from iqa.metrics import KRCC, PLCC, RMSE, SRCC, IQAMetrics
from iqa.metrics.logistic import logistic4, map_to_mos
from iqa.metrics.plots import scatter_plot

PREDS = torch.tensor([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9])
MOS = torch.tensor([10.0, 30.0, 45.0, 70.0, 60.0, 25.0, 80.0])
IDS = torch.arange(7)


def test_values_match_scipy():
    metrics = IQAMetrics()
    metrics.update(PREDS, MOS, IDS)
    values = metrics.compute()
    assert values["srcc"] == pytest.approx(stats.spearmanr(PREDS, MOS).statistic)
    assert values["krcc"] == pytest.approx(stats.kendalltau(PREDS, MOS).statistic)
    assert values["plcc_raw"] == pytest.approx(stats.pearsonr(PREDS, MOS).statistic)
    assert values["plcc"] >= values["plcc_raw"] - 1e-6 and values["n_images"] == 7
    for cls, key in ((SRCC, "srcc"), (KRCC, "krcc"), (PLCC, "plcc"), (RMSE, "rmse")):
        single = cls()
        single.update(PREDS, MOS, IDS)
        assert float(single.compute()) == pytest.approx(float(values[key]), rel=1e-6)


def test_repeated_image_ids_count_once():
    metrics = IQAMetrics()
    metrics.update(PREDS, MOS, IDS)
    metrics.update(PREDS[:2], MOS[:2], IDS[:2])  # padding duplicates
    reference = IQAMetrics()
    reference.update(PREDS, MOS, IDS)
    assert metrics.compute() == reference.compute()


def test_logistic_fit_recovers_a_logistic_relation():
    x = np.linspace(-3, 3, 50)
    y = logistic4(x, 90.0, 10.0, 0.5, 0.7)
    assert np.allclose(map_to_mos(x, y), y, atol=1e-3)


def test_degenerate_inputs_give_nan_not_errors():
    metrics = IQAMetrics()
    metrics.update(torch.ones(3), MOS[:3], IDS[:3])
    assert math.isnan(float(metrics.compute()["srcc"]))
    assert math.isnan(float(SRCC().compute()))


def test_scatter_plot_writes_png(tmp_path):
    path = scatter_plot(PREDS.numpy(), MOS.numpy(), tmp_path / "s.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    indices = list(DistributedSampler(range(7), num_replicas=2, rank=rank, shuffle=False))  # 4 each: one padded
    ours = IQAMetrics()
    ours.update(PREDS[indices], MOS[indices], IDS[indices])
    from torchmetrics.regression import SpearmanCorrCoef

    plain = SpearmanCorrCoef()
    plain.update(PREDS[indices], MOS[indices])
    values = ours.compute()
    results[rank] = (float(values["srcc"]), float(values["plcc"]), int(values["n_images"]), float(plain.compute()))
    dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process():
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_rank, args=(_free_port(), results), nprocs=2, join=True)
    single = IQAMetrics()
    single.update(PREDS, MOS, IDS)
    expected = single.compute()
    for rank in (0, 1):
        srcc, plcc, n_images, plain = results[rank]
        assert srcc == pytest.approx(float(expected["srcc"]), abs=1e-12)
        assert plcc == pytest.approx(float(expected["plcc"]), abs=1e-9)
        assert n_images == 7
        assert plain != pytest.approx(srcc, abs=1e-3)  # the padded duplicate skews a plain metric
