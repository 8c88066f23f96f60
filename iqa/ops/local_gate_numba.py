"""LQMamba's per-direction channel gates and the gated merge of the K directions, fused on CPU
(numba), forward and hand-written backward.

The local scan (QMamba paper Sec. 3.1.2, after LocalMamba's ``BiAttn``, Sec. 3.3 there) gates
each direction's SS2D output y_k (channels c, pixels p of the H×W map) before summing them:

    x̂_kcp = (y_kcp − μ_kp) a_kp,   a_kp = (σ²_kp + ε)^{-1/2}      (LayerNorm over the channels)
    m_kc = (1/HW) Σ_p x̂_kcp,       g_k = select(m_k)             (select: affine, W₁, GELU, W₂, σ)
    out_cp = Σ_k g_kc y_kcp

Written with torch ops the LayerNorm statistics reduce over the strided channel axis and the
backward keeps several (B, K, D, H, W) intermediates; here each kernel streams the
``(D, P)`` slab of one (sample, direction) from memory a few times and writes only the
(B, K, P) statistics and the (B, K, D) means and gates. ``select`` (a few small matrices) stays
in torch; its backward is taken by autograd inside :meth:`GatedMerge.backward`.

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

from iqa.ops.fast_math import F32, FASTMATH, dot64


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def _statistics(ys, inside, eps, mean, scale, pooled):
    """ys (batch, K, D, P), inside (P,) 1 on the map and 0 on padding; fills mean and scale
    (batch, K, P), μ and a (a = 0 on padding), and pooled (batch, K, D), m before ``select``."""
    batch, directions, dim, pixels = ys.shape
    count = inside.sum()
    for task in prange(batch * directions):
        b, k = task // directions, task % directions
        x, mu, a = ys[b, k], mean[b, k], scale[b, k]
        mu[:] = 0.0  # Σ_c (x_cp − x_0p), then μ_p; a: Σ_c (x_cp − x_0p)², then a_p (shifted data: no cancellation)
        a[:] = 0.0
        for c in range(1, dim):
            for p in range(pixels):
                centred = x[c, p] - x[0, p]
                mu[p] += centred
                a[p] += centred * centred
        for p in range(pixels):
            offset = mu[p] / dim
            mu[p] = x[0, p] + offset
            a[p] = inside[p] / np.sqrt(max(a[p] / dim - offset * offset, F32(0.0)) + eps)
        shift = dot64(mu, a)
        for c in range(dim):
            pooled[b, k, c] = (dot64(x[c], a) - shift) / count


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def _merge(ys, gates, out):
    """out (batch, D, P) = Σ_k gates (batch, K, D) · ys (batch, K, D, P)."""
    batch, directions, dim, pixels = ys.shape
    for row in prange(batch * dim):
        b, c = row // dim, row % dim
        o = out[b, c]
        g = gates[b, 0, c]
        for p in range(pixels):
            o[p] = g * ys[b, 0, c, p]
        for k in range(1, directions):
            g, y = gates[b, k, c], ys[b, k, c]
            for p in range(pixels):
                o[p] += g * y[p]


@numba.njit(cache=True, parallel=True)
def _gate_grad(ys, grad_out, grad_gates):
    """grad_gates (batch, K, D) = Σ_p grad_out (batch, D, P) · ys (batch, K, D, P)."""
    batch, directions, dim, _ = ys.shape
    for row in prange(batch * dim):
        b, c = row // dim, row % dim
        for k in range(directions):
            grad_gates[b, k, c] = dot64(grad_out[b, c], ys[b, k, c])


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def _input_grad(ys, mean, scale, gates, grad_out, grad_pooled, count, grad_ys):
    """grad_ys (batch, K, D, P) = g ∂out + LayerNorm's adjoint of ∂x̂ = grad_pooled / count."""
    batch, directions, dim, pixels = ys.shape
    for task in prange(batch * directions):
        b, k = task // directions, task % directions
        x, mu, a, G, dx = ys[b, k], mean[b, k], scale[b, k], grad_pooled[b, k], grad_ys[b, k]
        G_mean = F32(G.sum() / dim)
        s = np.zeros(pixels, F32)  # Σ_c G_c x_cp, then mean_c(G_c x̂_cp) · a_p² / count
        for c in range(dim):
            for p in range(pixels):
                s[p] += G[c] * x[c, p]
        weight = np.empty(pixels, F32)  # a_p / count
        for p in range(pixels):
            weight[p] = a[p] / count
            s[p] = (s[p] / dim - mu[p] * G_mean) * a[p] * a[p] * weight[p]
        for c in range(dim):
            g, Gc, dout = gates[b, k, c], G[c] - G_mean, grad_out[b, c]
            for p in range(pixels):
                dx[c, p] = g * dout[p] + weight[p] * Gc - (x[c, p] - mu[p]) * s[p]


class GatedMerge(torch.autograd.Function):
    """(ys, select's parameters) → Σ_k select(m_k) ⊙ y_k; fp32, ys (batch, K, D, P) contiguous."""

    @staticmethod
    def forward(ctx, ys, inside, eps, select, *parameters):
        batch, directions, dim, pixels = ys.shape
        mean, scale = torch.empty(batch, directions, pixels), torch.empty(batch, directions, pixels)
        pooled = torch.empty(batch, directions, dim)
        _statistics(ys.numpy(), inside.numpy(), eps, mean.numpy(), scale.numpy(), pooled.numpy())
        gates = select(pooled).float().contiguous()
        out = torch.empty(batch, dim, pixels)
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
    """Σ_k select(m_k) ⊙ y_k on the H×W map (module docstring), ``(batch, D, H, W)`` fp32.

    ys (batch, K, D, Hp, Wp): the K directions' outputs on the map zero-padded to Hp ≥ H,
    Wp ≥ W; eps: the LayerNorm's ε; select: (batch, K, D) means of the normalised map → gates
    of the same shape, using ``parameters`` (they get gradients, as does ys).
    """
    batch, directions, dim, padded_h, padded_w = ys.shape
    inside = torch.zeros(padded_h, padded_w)
    inside[:height, :width] = 1.0
    out = GatedMerge.apply(ys.float().contiguous().view(batch, directions, dim, -1), inside.view(-1), eps, select,
                           *parameters)
    return out.view(batch, dim, padded_h, padded_w)[..., :height, :width]
