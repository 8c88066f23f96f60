"""The selective-scan recurrence as compiled CPU loops (numba), forward and backward.

Given the discretisation step Δ (already softplus-ed), each (sample, channel) row runs, for
every state n, the recurrence of Mamba's Alg. 2 with eqs. 2a–2b fused into one time loop:

    h_t = exp(Δ_t A_n) h_{t-1} + Δ_t B_tn u_t,        y_t = Σ_n C_tn h_tn + D u_t

The state lives in a register, the exponential and the products are computed in the loop, and
nothing of size (batch, dim, L, N) is materialised. Rows run in parallel (``prange``).

The backward pass is the adjoint of the recurrence. Per row and state it replays the forward
loop (keeping exp(Δ_t A_n) and h_t in a buffer of length L), then walks back in time with
λ_t = ∂loss/∂h_t, starting from the gradient of the last state:

    λ_t = g_t C_t + exp(Δ_{t+1} A) λ_{t+1},           g_t = ∂loss/∂y_t
    ∂Δ_t = Σ_n λ_tn (h_{t-1,n} exp(Δ_t A_n) A_n + B_tn u_t),   ∂u_t = g_t D + Σ_n λ_tn Δ_t B_tn
    ∂A_n = Σ_t λ_tn h_{t-1,n} exp(Δ_t A_n) Δ_t,   ∂B_tn = λ_tn Δ_t u_t,   ∂C_tn = g_t h_tn,   ∂D = Σ_t g_t u_t

Parameters shared by several rows (A over the batch; B and C over a group of channels) get
per-row gradients that torch sums afterwards, so the threads never write to the same place.

Softplus and the gate silu(z) are left to torch: its vectorised exp is about ten times faster
than libm's scalar one that ``math.exp`` calls here (no SVML), and with softplus inside the loop
the forward pass took 41 ms instead of 21 ms (one core, VMamba-T stage-1 sizes). SS2D on CPU
uses :mod:`iqa.ops.scan_cross_numba` instead, where softplus and exp(ΔA) are vectorised
polynomials (:mod:`iqa.ops.fast_math`, about 0.4–0.7 ns per element) and cost less than in torch.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import prange

from iqa.ops.scan_shapes import grouped, sum_shared


@numba.njit(cache=True, parallel=True)
def _forward(u, delta, A, B, C, y, last_state):
    """Add C·h to ``y`` (batch, dim, L) and fill ``last_state`` (batch, dim, N).
    B, C: (1 | batch, groups, N, 1 | L), the first or last axis of size 1 when not varying."""
    batch, dim, length = u.shape
    b_step, c_step = min(B.shape[3] - 1, 1), min(C.shape[3] - 1, 1)  # 0: fixed over time
    for row in prange(batch * dim):
        b, c = row // dim, row % dim
        Br = B[min(b, B.shape[0] - 1), c // (dim // B.shape[1])]
        Cr = C[min(b, C.shape[0] - 1), c // (dim // C.shape[1])]
        for n in range(A.shape[1]):
            h = np.float32(0.0)
            for t in range(length):
                h = math.exp(delta[b, c, t] * A[c, n]) * h + delta[b, c, t] * u[b, c, t] * Br[n, t * b_step]
                y[b, c, t] += Cr[n, t * c_step] * h
            last_state[b, c, n] = h


@numba.njit(cache=True, parallel=True)
def _backward(u, delta, A, B, C, grad_y, grad_last, du, ddelta, dA_rows, dB_rows, dC_rows):
    """Add to ``du``, ``ddelta`` and fill the per-row gradients ``dA_rows`` (batch,
    dim, N), ``dB_rows``, ``dC_rows`` (batch, dim, N, 1 | L; zeros on entry)."""
    batch, dim, length = u.shape
    b_step, c_step = min(B.shape[3] - 1, 1), min(C.shape[3] - 1, 1)
    for row in prange(batch * dim):
        b, c = row // dim, row % dim
        Br = B[min(b, B.shape[0] - 1), c // (dim // B.shape[1])]
        Cr = C[min(b, C.shape[0] - 1), c // (dim // C.shape[1])]
        decays = np.empty(length, np.float32)
        states = np.empty(length + 1, np.float32)  # states[t + 1] = h_t, states[0] = h_{-1} = 0
        for n in range(A.shape[1]):
            states[0] = 0.0
            for t in range(length):
                decays[t] = math.exp(delta[b, c, t] * A[c, n])
                states[t + 1] = decays[t] * states[t] + delta[b, c, t] * u[b, c, t] * Br[n, t * b_step]
            lam = grad_last[b, c, n]
            dA = 0.0
            for t in range(length - 1, -1, -1):
                dt, ut, g = delta[b, c, t], u[b, c, t], grad_y[b, c, t]
                dC_rows[b, c, n, t * c_step] += g * states[t + 1]
                lam += g * Cr[n, t * c_step]
                d_exponent = lam * states[t] * decays[t]  # ∂loss/∂(Δ_t A_n)
                ddelta[b, c, t] += d_exponent * A[c, n] + lam * Br[n, t * b_step] * ut
                dA += d_exponent * dt
                dB_rows[b, c, n, t * b_step] += lam * dt * ut
                du[b, c, t] += lam * dt * Br[n, t * b_step]
                lam *= decays[t]
            dA_rows[b, c, n] = dA


def _array(tensor: torch.Tensor) -> np.ndarray:
    """An fp32 C-contiguous numpy view (a copy only where needed) for the kernels."""
    return tensor.detach().float().contiguous().numpy()


class NumbaRecurrence(torch.autograd.Function):
    """(u, Δ, A, B, C, D | None) → (y, last state) by the compiled loops; fp32 inside and out."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D):
        y = (u * D[:, None] if D is not None else torch.zeros(u.shape)).contiguous()  # the loops add C·h
        last_state = torch.empty(*u.shape[:2], A.shape[1])
        _forward(_array(u), _array(delta), _array(A), _array(grouped(B)), _array(grouped(C)),
                 y.numpy(), last_state.numpy())
        ctx.save_for_backward(u, delta, A, B, C, D)
        return y, last_state

    @staticmethod
    def backward(ctx, grad_y, grad_last_state):
        u, delta, A, B, C, D = ctx.saved_tensors
        B_grouped, C_grouped = grouped(B), grouped(C)
        du = (grad_y * D[:, None] if D is not None else torch.zeros(u.shape)).contiguous()  # the loops add λ·ΔB
        ddelta = torch.zeros(u.shape)
        dA_rows = torch.empty(*u.shape[:2], A.shape[1])
        dB_rows = torch.zeros(*u.shape[:2], *B_grouped.shape[2:])
        dC_rows = torch.zeros(*u.shape[:2], *C_grouped.shape[2:])
        _backward(_array(u), _array(delta), _array(A), _array(B_grouped), _array(C_grouped),
                  _array(grad_y), _array(grad_last_state),
                  du.numpy(), ddelta.numpy(), dA_rows.numpy(), dB_rows.numpy(), dC_rows.numpy())
        dB = sum_shared(dB_rows, B_grouped.shape).reshape(B.shape)
        dC = sum_shared(dC_rows, C_grouped.shape).reshape(C.shape)
        dD = (grad_y * u).sum((0, 2)) if D is not None else None
        return du, ddelta, dA_rows.sum(0), dB, dC, dD


def recurrence_numba(u, delta, A, B, C, D=None) -> tuple[torch.Tensor, torch.Tensor]:
    """y = C·h + D·u (batch, dim, L) and the last state (batch, dim, N) of CPU fp32 inputs."""
    return NumbaRecurrence.apply(u, delta, A, B, C, D)
