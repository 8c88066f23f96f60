"""Losses, learning-rate schedules and optimiser construction."""

from __future__ import annotations

import pytest
import torch

from iqa.training.losses import WeightedLoss, plcc_loss, rank_loss
from iqa.training.optim import OptimizerSpec, SchedulerSpec


def test_plcc_loss_is_zero_for_linearly_related_scores_and_positive_otherwise():
    target = torch.tensor([0.1, 0.5, 0.3, 0.9])
    assert plcc_loss(2 * target + 1, target) == pytest.approx(0.0, abs=1e-6)
    assert plcc_loss(-target, target) > 0.5


def test_rank_loss_penalises_only_wrongly_ordered_pairs():
    target = torch.tensor([0.0, 1.0])
    assert rank_loss(torch.tensor([0.0, 1.0]), target) == 0
    assert rank_loss(torch.tensor([1.0, 0.0]), target) == pytest.approx(1.0)


def test_weighted_loss_sums_its_terms_and_refuses_unknown_ones():
    pred, target = torch.tensor([0.2, 0.4]), torch.tensor([0.0, 1.0])
    parts = WeightedLoss({"mse": 1.0, "l1": 0.5})(pred, target)
    assert parts["loss"] == pytest.approx(float(parts["mse"] + parts["l1"]))
    assert parts["l1"] == pytest.approx(0.5 * 0.4)
    with pytest.raises(ValueError, match="loss.terms"):
        WeightedLoss({"huber_typo": 1.0})


def test_schedules():
    cosine = SchedulerSpec(name="cosine", warmup_epochs=1)
    assert cosine.multiplier(0, 10, 100) == pytest.approx(0.1)
    assert cosine.multiplier(10, 10, 100) == pytest.approx(1.0)
    assert cosine.multiplier(100, 10, 100) == pytest.approx(0.0, abs=1e-9)
    step = SchedulerSpec(name="step", step_epochs=3, gamma=0.1)  # DEIQT: x0.1 every 3 epochs
    assert [step.multiplier(e * 10, 10, 90) for e in (0, 2, 3, 6)] == pytest.approx([1, 1, 0.1, 0.01])
    assert SchedulerSpec().multiplier(5, 10, 100) == 1.0
    with pytest.raises(ValueError, match="scheduler.name"):
        SchedulerSpec(name="linear")


def test_optimizer_spec_builds_sgd_and_adamw():
    parameters = [torch.nn.Parameter(torch.zeros(2))]
    sgd = OptimizerSpec(name="sgd", lr=60.0).build(parameters)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0 and sgd.defaults["lr"] == 60.0
    assert isinstance(OptimizerSpec().build(parameters), torch.optim.AdamW)
    with pytest.raises(ValueError, match="optimizer.name"):
        OptimizerSpec(name="adam").build(parameters)
