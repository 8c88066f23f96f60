"""LQMamba's per-direction channel gates and the gated merge of the K directions, fused on CPU
(numba), forward and hand-written backward.

The local scan (QMamba paper Sec. 3.1.2, after LocalMamba's ``BiAttn``, Sec. 3.3 there) gates
each direction's SS2D output y_k (channels c, pixels p of the H×W map) before summing them:

    x̂_kcp = (y_kcp − μ_kp) a_kp,   a_kp = (σ²_kp + ε)^{-1/2}      (LayerNorm over the channels)
    m_kc = (1/HW) Σ_p x̂_kcp,       g_k = select(m_k)             (select: affine, W₁, GELU, W₂, σ)
    out_cp = Σ_k g_kc y_kcp

The maps are pixel-major, ``(B, K, P, D)`` as the fused scan (:mod:`iqa.ops.scan_cross_numba`)
writes them, so the LayerNorm statistics reduce over a contiguous row of channels. Written with
torch ops the backward keeps several (B, K, D, H, W) intermediates; here each kernel streams the
``(P, D)`` slab of one (sample, direction) from memory a few times and writes only the (B, K, P)
statistics and the (B, K, D) means and gates. ``select`` (a few small matrices) stays in torch;
its backward is taken by autograd inside :meth:`GatedMerge.backward`.

Backward, with G_kc = ∂loss/∂m_kc and ∂out given (LayerNorm's adjoint for ∂x̂_kcp = G_kc / HW):

    ∂g_kc = Σ_p ∂out_cp y_kcp
    ∂y_kcp = g_kc ∂out_cp + (a_kp / HW) (G_kc − mean_c G_kc − x̂_kcp mean_c(G_kc x̂_kcp))

The maps may be zero-padded to whole windows: the kernels read the padded ``(Hp, Wp)`` slab
but only its top-left H×W pixels count (a_kp = 0 elsewhere); padded pixels get ∂y = 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numba
import numpy as np
import torch
from numba import prange

from iqa.ops.fast_math import F32, KERNEL, dot64

_REDUCE = {"reassoc", "contract"}  # row sums in float64 lanes


@numba.njit(cache=True, fastmath=_REDUCE)
def _mean_variance(row) -> tuple[float, float]:
    """Mean and (biased) variance of a row of channels, two passes in float64."""
    total = 0.0
    for c in range(row.size):
        total += row[c]
    mean = total / row.size
    squares = 0.0
    for c in range(row.size):
        centred = row[c] - mean
        squares += centred * centred
    return mean, squares / row.size


@numba.njit(cache=True, parallel=True, **KERNEL)
def _statistics(ys, inside, eps, mean, scale, pooled):
    """ys (batch, K, P, D), inside (P,) 1 on the map and 0 on padding; fills mean and scale
    (batch, K, P), μ and a (a = 0 on padding), and pooled (batch, K, D), m before ``select``."""
    batch, directions, pixels, dim = ys.shape
    count = inside.sum()
    for task in prange(batch * directions):
        b, k = task // directions, task % directions
        sums = np.zeros(dim)  # Σ_p a_p (x_pc − μ_p), in float64
        for p in range(pixels):
            mu, variance = _mean_variance(ys[b, k, p])
            a = inside[p] / np.sqrt(variance + eps)
            mean[b, k, p], scale[b, k, p] = mu, a
            if a != 0.0:
                for c in range(dim):
                    sums[c] += a * (ys[b, k, p, c] - mu)
        for c in range(dim):
            pooled[b, k, c] = sums[c] / count


@numba.njit(cache=True, parallel=True, **KERNEL)
def _merge(ys, gates, out):
    """out (batch, P, D) = Σ_k gates (batch, K, D) · ys (batch, K, P, D)."""
    batch, directions, pixels, dim = ys.shape
    for row in prange(batch * pixels):
        b, p = row // pixels, row % pixels
        for c in range(dim):
            out[b, p, c] = gates[b, 0, c] * ys[b, 0, p, c]
        for k in range(1, directions):
            for c in range(dim):
                out[b, p, c] += gates[b, k, c] * ys[b, k, p, c]


@numba.njit(cache=True, parallel=True, **KERNEL)
def _gate_grad(ys, grad_out, grad_gates):
    """grad_gates (batch, K, D) = Σ_p grad_out (batch, P, D) · ys (batch, K, P, D), in float64."""
    batch, directions, pixels, dim = ys.shape
    for task in prange(batch * directions):
        b, k = task // directions, task % directions
        sums = np.zeros(dim)
        for p in range(pixels):
            for c in range(dim):
                sums[c] += grad_out[b, p, c] * ys[b, k, p, c]
        for c in range(dim):
            grad_gates[b, k, c] = sums[c]


@numba.njit(cache=True, parallel=True, **KERNEL)
def _input_grad(ys, mean, scale, gates, grad_out, grad_pooled, count, grad_ys):
    """grad_ys (batch, K, P, D) = g ∂out + LayerNorm's adjoint of ∂x̂ = grad_pooled / count."""
    batch, directions, pixels, dim = ys.shape
    for task in prange(batch * directions):
        b, k = task // directions, task % directions
        G = grad_pooled[b, k]
        G_mean = F32(G.sum() / dim)
        centred_G = np.empty(dim, F32)
        for c in range(dim):
            centred_G[c] = G[c] - G_mean
        for p in range(pixels):
            mu, a = mean[b, k, p], scale[b, k, p]
            weight = a / count
            # mean_c(G_c x̂_pc) · a_p / count, with x̂_pc = (x_pc − μ_p) a_p
            s = F32((dot64(G, ys[b, k, p]) / dim - mu * G_mean) * a * a * weight)
            for c in range(dim):
                grad_ys[b, k, p, c] = (gates[b, k, c] * grad_out[b, p, c] + weight * centred_G[c]
                                       - (ys[b, k, p, c] - mu) * s)


class GatedMerge(torch.autograd.Function):
    """(ys, select's parameters) → Σ_k select(m_k) ⊙ y_k; fp32, ys (batch, K, P, D) contiguous."""

    @staticmethod
    def forward(ctx, ys, inside, eps, select, *parameters):
        batch, directions, pixels, dim = ys.shape
        mean, scale = torch.empty(batch, directions, pixels), torch.empty(batch, directions, pixels)
        pooled = torch.empty(batch, directions, dim)
        _statistics(ys.numpy(), inside.numpy(), eps, mean.numpy(), scale.numpy(), pooled.numpy())
        gates = select(pooled).float().contiguous()
        out = torch.empty(batch, pixels, dim)
        _merge(ys.numpy(), gates.numpy(), out.numpy())
        ctx.save_for_backward(ys, inside, mean, scale, pooled, gates)
        ctx.select, ctx.parameters = select, parameters
        return out

    @staticmethod
    def backward(ctx, grad_out):
        ys, inside, mean, scale, pooled, gates = ctx.saved_tensors
        grad_out = grad_out.float().contiguous()
        grad_gates = torch.empty(gates.shape)
        _gate_grad(ys.numpy(), grad_out.numpy(), grad_gates.numpy())
        wanted = [p for p, needed in zip(ctx.parameters, ctx.needs_input_grad[4:]) if needed]
        with torch.enable_grad():
            pooled = pooled.detach().requires_grad_()
            grad_pooled, *grads = torch.autograd.grad(ctx.select(pooled), [pooled, *wanted], grad_gates)
        grad_ys = torch.empty(ys.shape)
        _input_grad(ys.numpy(), mean.numpy(), scale.numpy(), gates.numpy(), grad_out.numpy(),
                    grad_pooled.float().contiguous().numpy(), float(inside.sum()), grad_ys.numpy())
        grads = iter(grads)
        return (grad_ys, None, None, None, *(next(grads) if needed else None for needed in ctx.needs_input_grad[4:]))


def gated_merge_numba(ys: torch.Tensor, height: int, width: int, eps: float,
                      select: Callable[[torch.Tensor], torch.Tensor],
                      parameters: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_k select(m_k) ⊙ y_k on the H×W map (module docstring), ``(batch, D, H, W)`` fp32 (a
    channels-last view).

    ys (batch, K, Hp, Wp, D), pixel-major: the K directions' outputs on the map zero-padded to
    Hp ≥ H, Wp ≥ W; eps: the LayerNorm's ε; select: (batch, K, D) means of the normalised map →
    gates of the same shape, using ``parameters`` (they get gradients, as does ys).
    """
    batch, directions, padded_h, padded_w, dim = ys.shape
    inside = torch.zeros(padded_h, padded_w)
    inside[:height, :width] = 1.0
    out = GatedMerge.apply(ys.float().contiguous().view(batch, directions, -1, dim), inside.view(-1), eps, select,
                           *parameters)
    return out.view(batch, padded_h, padded_w, dim)[:, :height, :width].permute(0, 3, 1, 2)
