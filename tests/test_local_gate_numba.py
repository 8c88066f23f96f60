"""LQMamba's fused per-direction gate and merge (iqa.ops.local_gate_numba) against the official
ChannelGate (LocalMamba's BiAttn) in fp64: output and every gradient."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from iqa.models.backbones.scans import ChannelGate

pytest.importorskip("numba")
from iqa.ops.local_gate_numba import gated_merge_numba


@pytest.mark.parametrize("height, width, padded", [(4, 6, (4, 6)), (5, 7, (6, 8)), (3, 1, (4, 2))])
def test_gated_merge_equals_the_sum_of_the_official_gates(height, width, padded):
    torch.manual_seed(0)
    gate = ChannelGate(16)
    for p in gate.parameters():
        nn.init.normal_(p)
    ys = (torch.randn(2, 4, *padded, 16) * 3 + 1).requires_grad_()  # pixel-major
    out = gated_merge_numba(ys, height, width, gate.norm.eps, gate.select_normalized, list(gate.parameters()))
    exact = copy.deepcopy(gate).double()
    expected = sum(exact(ys[:, k, :height, :width].permute(0, 3, 1, 2).double()) for k in range(4))
    assert out.dtype == torch.float32 and out.shape == expected.shape == (2, 16, height, width)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)

    weights = torch.randn(out.shape)
    ours = torch.autograd.grad((out * weights).sum(), [ys, *gate.parameters()])
    theirs = torch.autograd.grad((expected * weights.double()).sum(), [ys, *exact.parameters()])
    names = ["ys"] + [name for name, _ in gate.named_parameters()]
    for name, a, b in zip(names, ours, theirs):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-5 * max(1.0, b.abs().max().item()),
                                   msg=lambda m, n=name: f"{n}: {m}")
    assert not ours[0][:, :, height:].any() and not ours[0][:, :, :, width:].any()  # padding gets no gradient


def test_gates_may_be_frozen():
    gate = ChannelGate(8).requires_grad_(False)
    ys = torch.randn(1, 4, 2, 2, 8, requires_grad=True)
    out = gated_merge_numba(ys, 2, 2, gate.norm.eps, gate.select_normalized, list(gate.parameters()))
    out.sum().backward()
    assert ys.grad is not None and all(p.grad is None for p in gate.parameters())
