"""The selective scan's torch backend (compiled CPU loop and parallel scan) against a plain
sequential reference, outputs and gradients of every input, and the backend dispatch."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from iqa.ops import selective_scan
from iqa.ops.selective_scan import selective_scan_torch

scan_module = importlib.import_module("iqa.ops.selective_scan")  # the package's attribute is the function

ALGORITHMS = ["numba", "scan"] if scan_module.recurrence_numba is not None else ["scan"]


def reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Mamba's recurrence (Alg. 2, eqs. 2a–2b) one sample, channel and step at a time, in fp64."""
    u, delta, A = u.double(), delta.double(), A.double()
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape

    def at(matrix, b, c, t):  # the N-vector of B or C used by sample b, channel c, step t
        matrix = matrix.double()
        if matrix.dim() == 2:
            return matrix[c]
        if matrix.dim() == 3:
            return matrix[b, :, t]
        return matrix[b, c // (dim // matrix.shape[1]), :, t]

    out = torch.zeros(batch, dim, length, dtype=torch.float64)
    last_states = []
    for b in range(batch):
        for c in range(dim):
            h = torch.zeros(A.shape[1], dtype=torch.float64)
            for t in range(length):
                h = torch.exp(delta[b, c, t] * A[c]) * h + delta[b, c, t] * at(B, b, c, t) * u[b, c, t]
                out[b, c, t] = (at(C, b, c, t) * h).sum()
            last_states.append(h)
    if D is not None:
        out = out + u * D.double()[:, None]
    if z is not None:
        out = out * F.silu(z.double())
    return out, torch.stack(last_states).view(batch, dim, -1)


CASES = {  # name: batch, dim, L, N, B form, C form, optional inputs, softplus
    "L1-grouped-all": (2, 4, 1, 1, "grouped2", "grouped2", "D z bias", True),
    "oddL-vmamba": (1, 8, 17, 1, "grouped4", "grouped4", "D bias", True),
    "N16-shared-bare": (2, 6, 33, 16, "shared", "shared", "", False),
    "N16-fixed-gated": (2, 4, 70, 16, "fixed", "fixed", "D z", True),
    "mixed-forms": (1, 6, 129, 2, "fixed", "grouped3", "bias", False),
    "batch3-z": (3, 6, 5, 3, "grouped3", "shared", "z", True),
}


def make_inputs(batch, dim, length, n, b_form, c_form, optional, softplus, seed=0):
    """Random inputs as a Mamba layer produces them: Δ > 0 without softplus, A < 0."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    def matrix(form):
        shape = {"fixed": (dim, n), "shared": (batch, n, length)}.get(form) or (batch, int(form[-1]), n, length)
        return randn(*shape) / n**0.5

    delta = randn(batch, dim, length) if softplus else torch.rand(batch, dim, length, generator=g) + 0.05
    inputs = {"u": randn(batch, dim, length), "delta": delta, "A": -torch.rand(dim, n, generator=g) - 0.5,
              "B": matrix(b_form), "C": matrix(c_form), "D": randn(dim) if "D" in optional else None,
              "z": randn(batch, dim, length) if "z" in optional else None,
              "delta_bias": randn(dim) * 0.1 if "bias" in optional else None}
    return {k: v.requires_grad_() if v is not None else None for k, v in inputs.items()}, softplus


def assert_close(ours: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Within 1e-5 of the fp64 reference, relative to the tensor's scale (or 1)."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_reference_outputs_state_and_gradients(case, algorithm):
    inputs, softplus = make_inputs(*case)
    out, last = selective_scan_torch(**inputs, delta_softplus=softplus, return_last_state=True, algorithm=algorithm)
    expected, expected_last = reference(**inputs, delta_softplus=softplus)
    assert out.dtype == torch.float32 and last.shape == expected_last.shape
    assert_close(out, expected, "out")
    assert_close(last, expected_last, "last state")
    g = torch.Generator().manual_seed(1)
    weights, last_weights = torch.randn(out.shape, generator=g), torch.randn(last.shape, generator=g)
    names = [name for name, value in inputs.items() if value is not None]
    ours = torch.autograd.grad((out * weights).sum() + (last * last_weights).sum(), [inputs[n] for n in names])
    theirs = torch.autograd.grad((expected * weights.double()).sum() + (expected_last * last_weights.double()).sum(),
                                 [inputs[n] for n in names])
    for name, a, b in zip(names, ours, theirs):
        assert a.shape == inputs[name].shape
        assert_close(a, b.double(), f"gradient of {name}")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_half_precision_inputs_compute_in_fp32(algorithm):
    inputs, _ = make_inputs(2, 8, 40, 4, "grouped4", "grouped4", "D z bias", True)
    low = {k: v.detach().bfloat16().requires_grad_() if v is not None else None for k, v in inputs.items()}
    exact = {k: v.detach().float().requires_grad_() if v is not None else None for k, v in low.items()}
    out, last = selective_scan_torch(**low, delta_softplus=True, return_last_state=True, algorithm=algorithm)
    expected, expected_last = selective_scan_torch(**exact, delta_softplus=True, return_last_state=True,
                                                   algorithm=algorithm)
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
    assert torch.equal(out, expected.bfloat16()) and torch.equal(last, expected_last)
    out.float().sum().backward()
    expected.sum().backward()
    for name, value in low.items():
        if value is not None:
            assert value.grad.dtype == torch.bfloat16
            assert torch.equal(value.grad, exact[name].grad.bfloat16()), name


def test_algorithms_agree_at_vmamba_sizes():
    """Stage-1-like shapes (4 direction groups, d_state 1, long L) where rounding would pile up."""
    if len(ALGORITHMS) < 2:
        pytest.skip("numba is not installed")
    inputs, _ = make_inputs(1, 16, 3136, 1, "grouped4", "grouped4", "D bias", True)
    outs = [selective_scan_torch(**inputs, delta_softplus=True, algorithm=a) for a in ALGORITHMS]
    grads = [torch.autograd.grad(o.square().sum(), [inputs["A"], inputs["B"]]) for o in outs]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_auto_uses_numba_on_cpu_and_falls_back_to_the_parallel_scan(monkeypatch):
    inputs, _ = make_inputs(1, 4, 9, 2, "grouped2", "grouped2", "D", True)
    if scan_module.recurrence_numba is not None:
        assert torch.equal(selective_scan(**inputs), selective_scan_torch(**inputs, algorithm="numba"))
    monkeypatch.setattr(scan_module, "recurrence_numba", None)  # as when numba does not import
    assert torch.equal(selective_scan(**inputs), selective_scan_torch(**inputs, algorithm="scan"))
    with pytest.raises(ValueError, match="pip install numba"):
        selective_scan_torch(**inputs, algorithm="numba")


def test_argument_errors():
    inputs, _ = make_inputs(1, 4, 5, 1, "grouped2", "grouped2", "", False)
    with pytest.raises(ValueError, match="auto, cuda or torch"):
        selective_scan(**inputs, backend="numba")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        selective_scan_torch(**inputs, algorithm="chunked")
    with pytest.raises(ValueError, match="G dividing dim = 4"):
        selective_scan(**{**inputs, "B": torch.randn(1, 3, 1, 5)})
    try:
        import mamba_ssm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install '\.\[mamba\]'"):
            selective_scan(**inputs, backend="cuda")
    else:
        with pytest.raises(ValueError, match="needs CUDA tensors"):
            selective_scan(**inputs, backend="cuda")


# --- SS2D's four scans fused on CPU: paths through a map in pixel order (iqa.ops.scan_cross_numba)

try:
    from iqa.ops.scan_cross_numba import directional_scan_numba
except ImportError:  # numba is optional
    directional_scan_numba = None
needs_numba = pytest.mark.skipif(directional_scan_numba is None, reason="numba is not installed")


def scan_paths(kind: str, height: int, width: int) -> tuple[torch.Tensor, int]:
    """(K, P) pixel orders and P: VMamba's cross scan, LQMamba's 2×2 windows, or random orders."""
    from iqa.models.backbones.scans import CrossScan, LocalScan

    if kind == "random":
        g = torch.Generator().manual_seed(3)
        return torch.stack([torch.randperm(height * width, generator=g) for _ in range(4)]).int(), height * width
    scan = CrossScan() if kind == "cross" else LocalScan(dim=8, window=2)
    padded = scan.padded_size(height, width)
    return scan.paths(height, width), padded[0] * padded[1]


def directional_reference(u, ranked, dt_weight, delta_bias, A, B, C, D, paths, merge):
    """The fp64 :func:`reference` on the K sequences gathered along ``paths`` from the
    pixel-major inputs, put back at their pixels; Δ before bias and softplus is dt_weight · ranked
    (SS2D's ``dt_projs``)."""
    u, B, C = u.transpose(1, 2), B.permute(0, 2, 3, 1), C.permute(0, 2, 3, 1)  # (batch, [K,] ·, P)
    delta = torch.matmul(dt_weight.double(), ranked.permute(0, 2, 3, 1).double())
    batch, directions, dim, pixels = delta.shape
    index = paths.long()
    u_seq = torch.cat([u[:, :, index[k]] for k in range(directions)], 1)
    delta_seq = torch.cat([delta[:, k][:, :, index[k]] for k in range(directions)], 1)
    B_seq = torch.stack([B[:, k][:, :, index[k]] for k in range(directions)], 1)
    C_seq = torch.stack([C[:, k][:, :, index[k]] for k in range(directions)], 1)
    out, _ = reference(u_seq, delta_seq, A, B_seq, C_seq, D, delta_bias=delta_bias, delta_softplus=True)
    out = out.view(batch, directions, dim, pixels)
    at_pixels = torch.stack([out[:, k][:, :, index[k].argsort()] for k in range(directions)], 1).transpose(2, 3)
    return at_pixels.sum(1) if merge else at_pixels


@needs_numba
@pytest.mark.parametrize("merge", [True, False], ids=["merged", "per-direction"])
@pytest.mark.parametrize("n_state", [1, 16])
@pytest.mark.parametrize("dim", [3, 24, 32])
@pytest.mark.parametrize("kind, height, width", [("cross", 5, 7), ("cross", 4, 6), ("local", 5, 3), ("random", 3, 4)])
def test_fused_directional_scan_matches_reference(kind, height, width, n_state, merge, dim):
    """Against the fp64 reference, with channel blocks of several widths (the kernels take one
    block of a power-of-two width dividing ``dim`` per task: 1 for dim 3, up to 8 and 16 for 24, 32)."""
    paths, pixels = scan_paths(kind, height, width)
    batch, directions, rank = 2, 4, {3: 2, 24: 7, 32: 5}[dim]  # ranks: passes of 2; 4, 2 and 1; 4 and 1
    g = torch.Generator().manual_seed(0)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).requires_grad_()

    inputs = {"u": randn(batch, pixels, dim), "ranked": randn(batch, pixels, directions, rank),
              "dt_weight": randn(directions, dim, rank), "delta_bias": randn(directions * dim, scale=0.5),
              "A": (-torch.rand(directions * dim, n_state, generator=g) - 0.5).requires_grad_(),
              "B": randn(batch, pixels, directions, n_state, scale=n_state**-0.5),
              "C": randn(batch, pixels, directions, n_state, scale=n_state**-0.5), "D": randn(directions * dim)}
    out = directional_scan_numba(**inputs, paths=paths, merge=merge)
    expected = directional_reference(**inputs, paths=paths, merge=merge)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    assert_close(out, expected, "out")
    weights = torch.randn(out.shape, generator=g)
    ours = torch.autograd.grad((out * weights).sum(), list(inputs.values()))
    theirs = torch.autograd.grad((expected * weights.double()).sum(), list(inputs.values()))
    for name, a, b in zip(inputs, ours, theirs):
        assert a.shape == inputs[name].shape
        assert_close(a, b.double(), f"gradient of {name}")


@needs_numba
def test_fused_softplus_and_exp_are_float32_accurate():
    """The kernels' vectorised exp, softplus and sigmoid against torch in fp64 (a few ulps)."""
    import numba
    import numpy as np

    from iqa.ops.fast_math import COEFFICIENTS, KERNEL, constants, exp32, sigmoid32, softplus32

    @numba.njit(**KERNEL)
    def apply(x, out, table):
        c = constants(table)
        for i in range(x.size):
            out[0, i], out[1, i], out[2, i] = exp32(x[i], c), softplus32(x[i], c), sigmoid32(x[i], c)

    x = torch.cat([torch.linspace(-86, 88, 100_001), torch.logspace(-30, 1, 301), -torch.logspace(-30, 1, 301)])
    out = np.empty((3, x.numel()), np.float32)
    apply(x.numpy(), out, COEFFICIENTS)
    xd = x.double()
    for ours, exact in zip(torch.from_numpy(out).double(), (xd.exp(), F.softplus(xd, threshold=100), xd.sigmoid())):
        assert ((ours - exact).abs() / exact).max() < 3e-7
    nan = np.full(1, np.nan, np.float32)
    apply(nan, out[:, :1], COEFFICIENTS)
    assert np.isnan(out[:, 0]).all()
