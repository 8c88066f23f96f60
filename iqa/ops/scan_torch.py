"""The selective-scan recurrence in plain torch, for any device: a log-depth parallel scan.

The recurrence h_t = a_t h_{t-1} + b_t, with a_t = exp(Δ_t A) and b_t = Δ_t B_t u_t (Mamba
eqs. 2a–2b), is a scan with the associative operator (a, b) ∘ (a', b') = (a a', a' b + b')
(Blelloch 1990; Martin & Cundy 2018). In Hillis & Steele's form it takes ⌈log₂ L⌉ steps, step
k combining every position with the one 2^k before it: about fifty full-size element-wise
operations for L = 3136 instead of thousands of tiny ones, which is what a GPU needs.

The backward pass is written out rather than taped: the adjoint λ_t = ∂loss/∂h_t solves the
same kind of recurrence backwards in time (equations in :mod:`iqa.ops.scan_numba`), so it is
the same scan run in reverse, and autograd keeps only the inputs instead of every step's
(batch, dim, L, N) intermediates.
"""

from __future__ import annotations

import torch

from iqa.ops.scan_shapes import grouped, sum_shared


def linear_scan(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """All h_t = a_t h_{t-1} + b_t along dim 2, from h = 0 (``reverse``: h_t = a_t h_{t+1} + b_t)."""
    a, b = a.clone(), b.clone()
    shift = 1
    while shift < b.shape[2]:
        later, earlier = slice(shift, None), slice(None, -shift)
        to, source = (earlier, later) if reverse else (later, earlier)
        b[:, :, to] += a[:, :, to] * b[:, :, source]
        a[:, :, to] = a[:, :, to] * a[:, :, source]
        shift *= 2
    return b


def _per_channel(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C as (1 | batch, dim, 1 | L, N), broadcastable against (batch, dim, L, N)."""
    matrix = grouped(matrix)
    return matrix.repeat_interleave(dim // matrix.shape[1], dim=1).transpose(2, 3)


def _to_shape_of(per_channel_grad: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """A gradient (batch, dim, L, N) of the per-channel B or C, summed back to ``matrix``'s shape."""
    grouped_shape = grouped(matrix).shape
    if grouped_shape[3] == 1:
        per_channel_grad = per_channel_grad.sum(2, keepdim=True)
    return sum_shared(per_channel_grad.transpose(2, 3), grouped_shape).reshape(matrix.shape)


def _decay_and_drive(u, delta, A, B) -> tuple[torch.Tensor, torch.Tensor]:
    """a_t = exp(Δ_t A) and b_t = Δ_t B_t u_t, both (batch, dim, L, N)."""
    decay = torch.exp(delta.unsqueeze(-1) * A[:, None, :])
    drive = (delta * u).unsqueeze(-1) * _per_channel(B, u.shape[1])
    return decay, drive


class ScanRecurrence(torch.autograd.Function):
    """(u, Δ, A, B, C, D | None) → (y, last state) by the parallel scan, the adjoint as backward."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D):
        states = linear_scan(*_decay_and_drive(u, delta, A, B))
        y = (states * _per_channel(C, u.shape[1])).sum(-1)
        ctx.save_for_backward(u, delta, A, B, C, D)
        return y + u * D[:, None] if D is not None else y, states[:, :, -1]

    @staticmethod
    def backward(ctx, grad_y, grad_last_state):
        u, delta, A, B, C, D = ctx.saved_tensors
        decay, drive = _decay_and_drive(u, delta, A, B)
        states = linear_scan(decay, drive)
        # λ_t = g_t C_t + a_{t+1} λ_{t+1}, with the last state's gradient entering at t = L − 1.
        direct = grad_y.unsqueeze(-1) * _per_channel(C, u.shape[1])
        direct[:, :, -1] += grad_last_state
        next_decay = torch.cat([decay[:, :, 1:], torch.zeros_like(decay[:, :, :1])], dim=2)
        lam = linear_scan(next_decay, direct, reverse=True)
        previous = torch.cat([torch.zeros_like(states[:, :, :1]), states[:, :, :-1]], dim=2)
        d_exponent = lam * previous * decay  # ∂loss/∂(Δ_t A)
        B_channels = _per_channel(B, u.shape[1])
        ddelta = (d_exponent * A[:, None, :] + lam * B_channels * u.unsqueeze(-1)).sum(-1)
        du = (lam * B_channels).sum(-1) * delta
        dA = (d_exponent * delta.unsqueeze(-1)).sum((0, 2))
        dB = _to_shape_of(lam * (delta * u).unsqueeze(-1), B)
        dC = _to_shape_of(grad_y.unsqueeze(-1) * states, C)
        if D is None:
            return du, ddelta, dA, dB, dC, None
        return du + grad_y * D[:, None], ddelta, dA, dB, dC, (grad_y * u).sum((0, 2))


def recurrence_scan(u, delta, A, B, C, D=None) -> tuple[torch.Tensor, torch.Tensor]:
    """y = C·h + D·u (batch, dim, L) and the last state (batch, dim, N) of fp32 inputs."""
    return ScanRecurrence.apply(u, delta, A, B, C, D)
