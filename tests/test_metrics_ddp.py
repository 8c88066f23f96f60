"""A real 2-process run (CPU, gloo): each rank feeds its ``DistributedSampler`` shard of
7 images — 4 each, so image 0 is seen twice — and the metrics must equal the
1-process values exactly, where a plain torchmetrics Spearman does not."""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler
from torchmetrics.regression import SpearmanCorrCoef

from iqa.metrics import KRCC, PLCC, RMSE, SRCC, IQAMetrics

PREDS = torch.tensor([3.97, 3.05, 1.16, 1.54, 3.07, 1.17, 3.95])
MOS = torch.tensor([3.27, 2.72, 1.38, 2.39, 3.49, 1.09, 4.5])
IDS = torch.arange(7)
WORLD_SIZE = 2


def all_metrics() -> dict:
    return {"all": IQAMetrics(), "srcc": SRCC(), "plcc": PLCC(), "krcc": KRCC(), "rmse": RMSE()}


def results(metrics: dict, indices: list[int]) -> dict:
    """Every metric's value on the given images, and the deduplicated scores."""
    for metric in metrics.values():
        metric.update(PREDS[indices], MOS[indices], IDS[indices])
    values = {name: metric.compute() for name, metric in metrics.items()}
    return {"values": values, "scores": metrics["all"].scores()}


def _rank(rank: int, port: int, out_dir: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=60))
    shard = list(DistributedSampler(range(len(IDS)), num_replicas=WORLD_SIZE, rank=rank, shuffle=False))
    plain = SpearmanCorrCoef()
    plain.update(PREDS[shard], MOS[shard])
    torch.save({"shard": shard, "plain_srcc": plain.compute(), **results(all_metrics(), shard)},
               out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Metric `SpearmanCorrcoef` will save")
def test_two_gloo_ranks_give_exactly_the_one_process_values(tmp_path):
    mp.spawn(_rank, args=(free_port(), tmp_path), nprocs=WORLD_SIZE, join=True)
    expected = results(all_metrics(), list(range(len(IDS))))
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]

    assert sorted(ranks[0]["shard"] + ranks[1]["shard"]) == [0, 0, 1, 2, 3, 4, 5, 6]  # one image padded
    for rank in ranks:
        assert rank["values"]["all"] == expected["values"]["all"]  # exact, every key
        for name in ("srcc", "plcc", "krcc", "rmse"):
            assert rank["values"][name] == expected["values"][name] == expected["values"]["all"][name]
        for gathered, single in zip(rank["scores"], expected["scores"]):
            assert (gathered == single).all()  # scores() outside compute() gathers every rank's images

    gathered_with_padding = [*ranks[0]["shard"], *ranks[1]["shard"]]
    plain_srcc = float(ranks[0]["plain_srcc"])
    assert plain_srcc == float(SpearmanCorrCoef()(PREDS[gathered_with_padding], MOS[gathered_with_padding]))
    assert round(plain_srcc, 4) == 0.7831 and round(float(expected["values"]["srcc"]), 4) == 0.8571
