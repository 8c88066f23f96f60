"""Selective scan (Mamba's S6 recurrence, Gu & Dao 2023, Alg. 2) with the semantics and
argument names of ``mamba_ssm``'s ``selective_scan_fn``.

With Δ = softplus(delta + delta_bias) (or without softplus), the zero-order-hold
discretisation of A and the Euler one of B (eqs. 2a–2b as mamba_ssm computes them):

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t,      y_t = C_t · h_t + D u_t,      out = y ⊙ silu(z)

Shapes: ``u, delta, z`` (batch, dim, L); ``A`` (dim, N); ``B, C`` (dim, N) fixed, (batch, N, L)
shared by all channels, or grouped (batch, G, N, L) where channel ``g·(dim/G) + h`` uses group
``g`` (VMamba's four scan directions); ``D, delta_bias`` (dim,). Real-valued only.

Backends: ``"cuda"`` is mamba_ssm's kernel (``pip install .[mamba]``); ``"torch"`` is ours and
runs anywhere with autograd: a chunked scan (a few large kernels per chunk of the sequence
instead of one tiny step per position) on GPUs and whenever gradients are needed, and the plain
recurrence for CPU inference, where it is the faster of the two (docs/benchmarks.md).
``"auto"`` takes the kernel for CUDA tensors when mamba_ssm imports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 64


def _mamba_kernel():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def _per_channel(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C as (batch, dim, N, L), or (dim, N) when fixed over time."""
    if matrix.dim() == 2:
        return matrix
    if matrix.dim() == 3:
        matrix = matrix.unsqueeze(1)
    groups = matrix.shape[1]
    return matrix.repeat_interleave(dim // groups, dim=1)


def _inputs(u, delta, A, B, delta_bias, delta_softplus):
    """Δ, exp-argument Δ·A (batch, dim, L, N) and Δ·B·u (batch, dim, L, N), in fp32."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    log_decay = delta.unsqueeze(-1) * A.float()[:, None, :]  # (b, d, L, N)
    B = _per_channel(B.float(), u.shape[1])
    B_t = B[None, :, None, :] if B.dim() == 2 else B.transpose(-1, -2)  # (b|1, d, L, N)
    drive = (delta * u.float()).unsqueeze(-1) * B_t
    return log_decay, drive


def _states_loop(log_decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """All states h_1..h_L by the plain recurrence (fast on CPU)."""
    decay = torch.exp(log_decay)
    state = drive.new_zeros(drive.shape[:2] + drive.shape[3:])
    states = []
    for t in range(drive.shape[2]):
        state = decay[:, :, t] * state + drive[:, :, t]
        states.append(state)
    return torch.stack(states, dim=2)


def _states_chunked(log_decay: torch.Tensor, drive: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """All states by chunks: inside a chunk h_t = Σ_{s≤t} exp(S_t − S_s) Δ_sB_su_s + exp(S_t) h_0
    with S the running sum of Δ·A, computed as one masked (chunk × chunk) product."""
    batch, dim, length, n = drive.shape
    state = drive.new_zeros(batch, dim, n)
    out = []
    for start in range(0, length, chunk):
        S = torch.cumsum(log_decay[:, :, start : start + chunk], dim=2)  # (b, d, T, N)
        T = S.shape[2]
        gaps = S.unsqueeze(3) - S.unsqueeze(2)  # (b, d, t, s, N) = S_t - S_s
        causal = torch.ones(T, T, dtype=torch.bool, device=S.device).tril()
        weights = torch.exp(gaps.masked_fill(~causal[None, None, :, :, None], float("-inf")))
        states = (weights * drive[:, :, start : start + chunk].unsqueeze(2)).sum(3) + torch.exp(S) * state.unsqueeze(2)
        state = states[:, :, -1]
        out.append(states)
    return torch.cat(out, dim=2)


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False, algorithm: str | None = None):
    """Our portable backend; ``algorithm`` ``"loop"`` or ``"chunked"`` (default: measured choice)."""
    if algorithm is None:
        training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, delta, A, B, C))
        algorithm = "chunked" if u.is_cuda or training else "loop"
    log_decay, drive = _inputs(u, delta, A, B, delta_bias, delta_softplus)
    states = _states_chunked(log_decay, drive) if algorithm == "chunked" else _states_loop(log_decay, drive)
    C = _per_channel(C.float(), u.shape[1])
    C_t = C[None, :, None, :] if C.dim() == 2 else C.transpose(-1, -2)
    out = (states * C_t).sum(-1)
    if D is not None:
        out = out + u.float() * D.float()[:, None]
    if z is not None:
        out = out * F.silu(z.float())
    out = out.to(u.dtype)
    return (out, states[:, :, -1]) if return_last_state else out


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend: str = "auto"):
    """Dispatch to ``backend`` (``auto`` | ``cuda`` | ``torch``); see the module docstring."""
    if backend not in ("auto", "cuda", "torch"):
        raise ValueError(f"scan backend must be auto, cuda or torch, got {backend!r}")
    kernel = _mamba_kernel() if backend != "torch" else None
    if backend == "cuda" and kernel is None:
        raise ImportError("scan_backend=cuda needs mamba_ssm: pip install '.[mamba]' on a CUDA machine")
    if kernel is not None and u.is_cuda:
        return kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
