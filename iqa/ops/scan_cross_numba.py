"""SS2D's four selective scans fused into one compiled CPU pass (numba), forward and backward.

VMamba's SS2D (Sec. 3.2) reads one ``(batch, D, H, W)`` map along K = 4 paths and runs Mamba's
S6 (Gu & Dao 2023, Alg. 2, eqs. 2a–2b, with mamba_ssm's ``delta_softplus``) on each:

    Δ_t = softplus(W_Δ r_t + bias),   h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t,   y_t = C_t · h_t + D u_t

with r_t the rank-R projection of the pixel (``dt_projs_weight`` W_Δ maps it to the channels).

Here nothing is reordered in memory: every input stays in pixel order, ``paths[k, t]`` is the
pixel that direction k reads at step t (row-/column-major and reversed for the cross scan;
windows for LQMamba's local scan), and the loops index through it. Per (sample, channel) row
and direction, Δ is computed once per pixel into a row buffer (R multiply-adds, bias, softplus)
and exp(Δ A) once per pixel and state, both by vectorised polynomials (:mod:`iqa.ops.fast_math`),
so the (batch, K, D, L) tensor of Δ never exists in memory; the recurrence then runs
along the path. The cross scan's merge (sum of the K directions at each pixel, VMamba's
``CrossMerge``) accumulates in the output row; the local scan keeps the K outputs apart for
its per-direction gates.

The backward pass is the adjoint of :mod:`iqa.ops.scan_numba` (same equations, λ_t =
∂loss/∂h_t walked back along the path), plus ∂δ = ∂Δ · sigmoid(δ + bias) for δ = W_Δ r + bias,
which goes to W_Δ, r and the bias without being stored. Every gradient is written once: ∂u by
the task that owns the row; the per-row sums ∂A, ∂D, ∂bias, ∂W_Δ and the partial sums of ∂r,
∂B, ∂C over a part of the channels are added up by torch afterwards (one small reduction; no
zero-filled per-channel copies of B and C).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import prange

from iqa.ops.fast_math import F32, FASTMATH, dot64, exp32, sigmoid32, softplus32


@numba.njit(cache=True, fastmath=FASTMATH)
def _delta_row(ranked, weight, bias: float, out) -> None:
    """out = W_Δ r + bias for one channel: ``ranked`` (R, P), ``weight`` (R,)."""
    out[:] = bias
    for r in range(weight.size):
        w, row = weight[r], ranked[r]
        for p in range(out.size):
            out[p] += w * row[p]


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def _forward(u, ranked, dt_weight, bias, A, B, C, D, paths, y):
    """u (batch, dim, P); ranked (batch, K, R, P); dt_weight (K, dim, R); A (K, dim, N); B, C
    (batch, K, N, P); D, bias (K, dim); paths (K, P); fills y (batch, 1 | K, dim, P) (1: summed)."""
    batch, dim, pixels = u.shape
    directions, n_state = A.shape[0], A.shape[2]
    merged = y.shape[1] == 1
    for row in prange(batch * dim):
        b, d = row // dim, row % dim
        ur = u[b, d]
        dt, dtu, decay = np.empty(pixels, F32), np.empty(pixels, F32), np.empty(pixels, F32)
        for k in range(directions):
            yr, path, D_kd = y[b, 0 if merged else k, d], paths[k], D[k, d]
            _delta_row(ranked[b, k], dt_weight[k, d], bias[k, d], dt)
            for p in range(pixels):
                dt[p] = softplus32(dt[p])
                dtu[p] = dt[p] * ur[p]
                yr[p] = D_kd * ur[p] + (yr[p] if merged and k > 0 else F32(0.0))
            for n in range(n_state):
                a, Bn, Cn = A[k, d, n], B[b, k, n], C[b, k, n]
                for p in range(pixels):
                    decay[p] = exp32(dt[p] * a)
                h = F32(0.0)
                for t in range(pixels):
                    p = path[t]
                    h = decay[p] * h + dtu[p] * Bn[p]
                    yr[p] += Cn[p] * h


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def _backward(u, ranked, dt_weight, bias, A, B, C, D, paths, grad_y,
              du, dW_rows, dbias_rows, dA_rows, dD_rows, dr_parts, dB_parts, dC_parts):
    """Writes du (batch, dim, P), the per-row sums dW_rows (batch, K, dim, R), dbias_rows,
    dD_rows (batch, K, dim), dA_rows (batch, K, dim, N), and dr_parts (batch, parts, K, R, P),
    dB_parts, dC_parts (batch, parts, K, N, P): sums over the channels of each part (one task
    per sample and part)."""
    batch, dim, pixels = u.shape
    directions, n_state = A.shape[0], A.shape[2]
    parts = dB_parts.shape[1]
    merged = grad_y.shape[1] == 1
    for task in prange(batch * parts):
        b, part = task // parts, task % parts
        first = part * dim // parts
        dt, sig, dtu = np.empty(pixels, F32), np.empty(pixels, F32), np.empty(pixels, F32)
        decay, ddt, v = np.empty(pixels, F32), np.empty(pixels, F32), np.empty(pixels, F32)
        states = np.empty(pixels + 1, F32)  # states[t + 1] = h_t along the path, states[0] = 0
        states[0] = 0.0
        for d in range(first, (part + 1) * dim // parts):
            ur, dur = u[b, d], du[b, d]
            for k in range(directions):
                g, path, D_kd = grad_y[b, 0 if merged else k, d], paths[k], D[k, d]
                _delta_row(ranked[b, k], dt_weight[k, d], bias[k, d], v)
                for p in range(pixels):
                    dt[p], sig[p] = softplus32(v[p]), sigmoid32(v[p])
                    dtu[p] = dt[p] * ur[p]
                    dur[p] = g[p] * D_kd + (dur[p] if k > 0 else F32(0.0))
                dD_rows[b, k, d] = dot64(g, ur)
                for n in range(n_state):
                    a, Bn, Cn = A[k, d, n], B[b, k, n], C[b, k, n]
                    dBn, dCn = dB_parts[b, part, k, n], dC_parts[b, part, k, n]
                    for p in range(pixels):
                        decay[p] = exp32(dt[p] * a)
                    h = F32(0.0)
                    for t in range(pixels):
                        p = path[t]
                        h = decay[p] * h + dtu[p] * Bn[p]
                        states[t + 1] = h
                    lam, dA = F32(0.0), 0.0
                    for t in range(pixels - 1, -1, -1):
                        p = path[t]
                        lam += g[p] * Cn[p]
                        d_exponent = lam * states[t] * decay[p]  # ∂loss/∂(Δ_t A_n)
                        dA += d_exponent * dt[p]
                        ddt[p] = d_exponent * a + lam * Bn[p] * ur[p] + (ddt[p] if n > 0 else F32(0.0))
                        dur[p] += lam * dt[p] * Bn[p]
                        if d == first:
                            dBn[p] = lam * dtu[p]
                            dCn[p] = g[p] * states[t + 1]
                        else:
                            dBn[p] += lam * dtu[p]
                            dCn[p] += g[p] * states[t + 1]
                        lam *= decay[p]
                    dA_rows[b, k, d, n] = dA
                dbias_rows[b, k, d] = dot64(ddt, sig)
                for p in range(pixels):
                    ddt[p] *= sig[p]  # now ∂loss/∂(W_Δ r + bias)
                weight = dt_weight[k, d]
                for r in range(weight.size):
                    dW_rows[b, k, d, r] = dot64(ddt, ranked[b, k, r])
                    w, dr = weight[r], dr_parts[b, part, k, r]
                    for p in range(pixels):
                        dr[p] = w * ddt[p] + (dr[p] if d != first else F32(0.0))


def _array(tensor: torch.Tensor) -> np.ndarray:
    """An fp32 C-contiguous numpy view (a copy only where needed) for the kernels."""
    return tensor.detach().float().contiguous().numpy()


def _paths(paths: torch.Tensor) -> np.ndarray:
    return paths.to(torch.int32).contiguous().numpy()


def _parts(batch: int, dim: int) -> int:
    """Channel parts per sample in the backward pass: about four tasks per thread."""
    return min(dim, math.ceil(4 * numba.get_num_threads() / batch))


class FusedDirectionalScan(torch.autograd.Function):
    """(u, r, W_Δ, bias, A, B, C, D) → the K directions' S6 outputs in pixel order; fp32."""

    @staticmethod
    def forward(ctx, u, ranked, dt_weight, delta_bias, A, B, C, D, paths, merge):
        batch, directions, _, pixels = ranked.shape
        dim = u.shape[1]
        y = torch.empty(batch, 1 if merge else directions, dim, pixels)
        _forward(*_kernel_inputs(u, ranked, dt_weight, delta_bias, A, B, C, D), _paths(paths), y.numpy())
        ctx.save_for_backward(u, ranked, dt_weight, delta_bias, A, B, C, D, paths)
        return y[:, 0] if merge else y

    @staticmethod
    def backward(ctx, grad_y):
        u, ranked, dt_weight, delta_bias, A, B, C, D, paths = ctx.saved_tensors
        batch, directions, rank, pixels = ranked.shape
        dim, n_state, parts = u.shape[1], A.shape[1], _parts(batch, u.shape[1])
        du = torch.empty(u.shape)
        dW_rows, dA_rows = torch.empty(batch, directions, dim, rank), torch.empty(batch, directions, dim, n_state)
        dbias_rows, dD_rows = torch.empty(batch, directions, dim), torch.empty(batch, directions, dim)
        dr_parts, dB_parts, dC_parts = (torch.empty(batch, parts, *t.shape[1:]) for t in (ranked, B, C))
        _backward(*_kernel_inputs(u, ranked, dt_weight, delta_bias, A, B, C, D), _paths(paths),
                  _array(grad_y[:, None] if grad_y.dim() == 3 else grad_y),
                  *(t.numpy() for t in (du, dW_rows, dbias_rows, dA_rows, dD_rows, dr_parts, dB_parts, dC_parts)))
        return (du, dr_parts.sum(1), dW_rows.sum(0), dbias_rows.sum(0).view(delta_bias.shape),
                dA_rows.sum(0).view(A.shape), dB_parts.sum(1), dC_parts.sum(1), dD_rows.sum(0).view(D.shape),
                None, None)


def _kernel_inputs(u, ranked, dt_weight, delta_bias, A, B, C, D) -> tuple[np.ndarray, ...]:
    """The kernels' arrays, per-channel parameters as (K, dim, ...)."""
    directions, dim = dt_weight.shape[:2]
    return (_array(u), _array(ranked), _array(dt_weight), _array(delta_bias).reshape(directions, dim),
            _array(A).reshape(directions, dim, -1), _array(B), _array(C), _array(D).reshape(directions, dim))


def directional_scan_numba(u, ranked, dt_weight, delta_bias, A, B, C, D, paths: torch.Tensor,
                           merge: bool) -> torch.Tensor:
    """SS2D's K selective scans on CPU, every tensor in pixel order (P = pixels of the map).

    u (batch, dim, P), the map all directions read; ranked (batch, K, R, P), the rank-R
    projection that dt_weight (K, dim, R) and delta_bias (K·dim,) turn into Δ before softplus;
    A (K·dim, N); B, C (batch, K, N, P); D (K·dim,); paths (K, P) int32, the pixel read at each
    step. Returns (batch, dim, P), the sum over directions, if ``merge``, else (batch, K, dim,
    P). Gradients for all tensors but ``paths``.
    """
    return FusedDirectionalScan.apply(u, ranked, dt_weight, delta_bias, A, B, C, D, paths, merge)
