"""Selective scan (Mamba's S6, Gu & Dao 2023, Alg. 2) with the semantics and argument names of
``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``.

With Δ = softplus(delta + delta_bias) (softplus only if ``delta_softplus``), A discretised by
zero-order hold and B by Euler's rule (eqs. 2a–2b as mamba_ssm computes them):

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t,      y_t = C_t · h_t + D u_t,      out = y ⊙ silu(z)

Shapes: ``u, delta, z`` (batch, dim, L); ``A`` (dim, N); ``B, C`` (dim, N) fixed over time,
(batch, N, L) shared by all channels, or (batch, G, N, L) where channel c uses group
c // (dim / G) (VMamba's G = 4 scan directions); ``D, delta_bias`` (dim,). Real-valued only.
The output has u's dtype; the last state (batch, dim, N) is fp32; all arithmetic is fp32.

Backends:

* ``"cuda"``: mamba_ssm's fused kernel (``pip install '.[mamba]'``), CUDA tensors only.
* ``"torch"``: ours, on any device, with autograd. Torch computes the element-wise parts
  (Δ and the gate) and one of two algorithms runs the recurrence, chosen by measurement
  (docs/benchmarks.md): on CPU a compiled loop (:mod:`iqa.ops.scan_numba`, when numba
  imports), elsewhere a log-depth parallel scan (:mod:`iqa.ops.scan_torch`). Both have a
  hand-written adjoint as backward pass; the gradient of the last state is propagated too.
* ``"triton"``: ours as fused Triton kernels (:mod:`iqa.ops.scan_triton`, ``pip install
  '.[triton]'``) for GPUs without mamba_ssm; CUDA tensors, or any with ``TRITON_INTERPRET=1``.
* ``"auto"``: for CUDA tensors ``"cuda"`` when mamba_ssm imports, else ``"triton"`` when triton
  imports, else ``"torch"``; ``"torch"`` for other tensors.
"""

from __future__ import annotations

import os

import torch.nn.functional as F

from iqa.ops.scan_torch import recurrence_scan

try:
    from iqa.ops.scan_numba import recurrence_numba
except ImportError:  # numba is optional: the parallel scan runs on CPUs too
    recurrence_numba = None

BACKENDS = ("auto", "cuda", "torch", "triton")
ALGORITHMS = ("numba", "scan")


def _mamba_kernel():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def _triton_scan():
    try:
        from iqa.ops.scan_triton import selective_scan_triton
    except ImportError:
        return None
    return selective_scan_triton


def _check_shapes(u, delta, A, B, C) -> None:
    batch, dim, length = u.shape
    if delta.shape != u.shape or A.shape[0] != dim:
        raise ValueError(f"u, delta must be (batch, dim, L) and A (dim, N); got {tuple(u.shape)}, "
                         f"{tuple(delta.shape)}, {tuple(A.shape)}")
    n_state = A.shape[1]
    for name, matrix in (("B", B), ("C", C)):
        groups = matrix.shape[1] if matrix.dim() == 4 else 1
        allowed = {2: (dim, n_state), 3: (batch, n_state, length), 4: (batch, groups, n_state, length)}
        if allowed.get(matrix.dim()) != tuple(matrix.shape) or dim % groups:
            raise ValueError(f"{name} must be (dim, N), (batch, N, L) or (batch, G, N, L) with G dividing "
                             f"dim = {dim} (N = {n_state}, L = {length}); got {tuple(matrix.shape)}")


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False, algorithm: str | None = None):
    """The ``"torch"`` backend; ``algorithm`` is ``"numba"`` (CPU) or ``"scan"``, by default
    numba on CPU when it imports, else the parallel scan."""
    if algorithm is None:
        algorithm = "numba" if u.device.type == "cpu" and recurrence_numba is not None else "scan"
    if algorithm not in ALGORITHMS:
        raise ValueError(f"scan algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "numba" and (recurrence_numba is None or u.device.type != "cpu"):
        raise ValueError("the numba algorithm needs numba (pip install numba) and CPU tensors")
    _check_shapes(u, delta, A, B, C)
    recurrence = recurrence_numba if algorithm == "numba" else recurrence_scan
    u32, dt = u.float(), delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    y, last_state = recurrence(u32, dt, A.float(), B.float(), C.float(), D.float() if D is not None else None)
    if z is not None:
        y = y * F.silu(z.float())
    out = y.to(u.dtype)
    return (out, last_state) if return_last_state else out


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend: str = "auto"):
    """Dispatch to ``backend`` (``auto`` | ``cuda`` | ``triton`` | ``torch``); see the module docstring."""
    if backend not in BACKENDS:
        raise ValueError(f"scan backend must be auto, cuda or torch (or triton), got {backend!r}")
    kernel = _mamba_kernel() if backend in ("auto", "cuda") else None
    if backend == "cuda":
        if kernel is None:
            raise ImportError("scan_backend=cuda needs mamba_ssm: pip install '.[mamba]' on a CUDA machine")
        if not u.is_cuda:
            raise ValueError("scan_backend=cuda needs CUDA tensors; use auto or torch")
    if kernel is not None and u.is_cuda:
        return kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    triton_scan = _triton_scan() if backend == "triton" or (backend == "auto" and u.is_cuda) else None
    if backend == "triton":
        if triton_scan is None:
            raise ImportError("scan_backend=triton needs triton: pip install '.[triton]'")
        if not u.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError("scan_backend=triton needs CUDA tensors (or TRITON_INTERPRET=1); use auto or torch")
    if triton_scan is not None:
        return triton_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
