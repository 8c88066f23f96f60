"""The torch backend of the selective scan against a plain sequential reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from iqa.ops import selective_scan
from iqa.ops.selective_scan import selective_scan_torch


def reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Mamba's recurrence written out step by step (fp64)."""
    u, delta, A = u.double(), delta.double(), A.double()
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape

    def at(matrix, b, t):  # (dim, N) for sample b, step t
        matrix = matrix.double()
        if matrix.dim() == 2:
            return matrix
        if matrix.dim() == 3:
            return matrix[b, :, t].expand(dim, -1)
        return matrix[b, :, :, t].repeat_interleave(dim // matrix.shape[1], dim=0)

    outs, states = [], []
    for b in range(batch):
        h = torch.zeros(dim, A.shape[1], dtype=torch.float64)
        ys = []
        for t in range(length):
            h = torch.exp(delta[b, :, t, None] * A) * h + delta[b, :, t, None] * at(B, b, t) * u[b, :, t, None]
            ys.append((h * at(C, b, t)).sum(-1))
        outs.append(torch.stack(ys, -1))
        states.append(h)
    out = torch.stack(outs)
    if D is not None:
        out = out + u * D.double()[:, None]
    if z is not None:
        out = out * F.silu(z.double())
    return out, torch.stack(states)


CASES = [  # batch, dim, length, n, B/C form, with D/z/bias/softplus
    (2, 4, 1, 1, "grouped", True),
    (1, 8, 17, 1, "grouped", True),
    (2, 6, 33, 16, "shared", False),
    (2, 4, 70, 16, "fixed", True),
    (1, 4, 129, 2, "grouped", False),
]


def make(batch, dim, length, n, form, extras, seed=0):
    g = torch.Generator().manual_seed(seed)
    randn = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    shapes = {"fixed": (dim, n), "shared": (batch, n, length), "grouped": (batch, 2, n, length)}
    tensors = dict(u=randn(batch, dim, length), delta=randn(batch, dim, length) * 0.5,
                   A=-torch.rand(dim, n, generator=g) - 0.5, B=randn(*shapes[form]) / n**0.5,
                   C=randn(*shapes[form]) / n**0.5,
                   D=randn(dim) if extras else None, z=randn(batch, dim, length) if extras else None,
                   delta_bias=randn(dim) * 0.1 if extras else None)
    return {k: (v.requires_grad_() if v is not None else None) for k, v in tensors.items()}, extras


@pytest.mark.parametrize("algorithm", ["loop", "chunked"])
@pytest.mark.parametrize("case", CASES, ids=[f"b{c[0]}d{c[1]}L{c[2]}n{c[3]}-{c[4]}" for c in CASES])
def test_matches_reference_outputs_and_gradients(case, algorithm):
    inputs, softplus = make(*case)
    out, last = selective_scan_torch(**inputs, delta_softplus=softplus, return_last_state=True, algorithm=algorithm)
    expected, expected_last = reference(**inputs, delta_softplus=softplus)
    assert torch.allclose(out.double(), expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(last.double(), expected_last, atol=1e-5, rtol=1e-5)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    names = [k for k, v in inputs.items() if v is not None]
    ours = torch.autograd.grad((out * weights).sum(), [inputs[k] for k in names])
    theirs = torch.autograd.grad((expected * weights.double()).sum(), [inputs[k] for k in names])
    for name, a, b in zip(names, ours, theirs):
        assert torch.allclose(a.double(), b.double(), atol=1e-4, rtol=1e-4), name


def test_dispatch():
    inputs, _ = make(1, 4, 5, 1, "grouped", False)
    assert torch.equal(selective_scan(**inputs), selective_scan_torch(**inputs))
    with pytest.raises(ValueError, match="auto, cuda or torch"):
        selective_scan(**inputs, backend="numba")
    try:
        import mamba_ssm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install '\.\[mamba\]'"):
            selective_scan(**inputs, backend="cuda")
