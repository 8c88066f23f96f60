"""SS2D's four selective scans fused into one compiled CPU pass (numba), forward and backward.

VMamba's SS2D (Sec. 3.2) reads one ``(batch, D, H, W)`` map along K = 4 paths and runs Mamba's
S6 (Gu & Dao 2023, Alg. 2, eqs. 2a–2b, with mamba_ssm's ``delta_softplus``) on each:

    Δ_t = softplus(W_Δ r_t + bias),   h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t,   y_t = C_t · h_t + D u_t

with r_t the rank-R projection of the pixel (``dt_projs_weight`` W_Δ maps it to the channels).

Nothing is reordered in memory: every tensor is pixel-major (channels last), as SS2D's
channels-last maps and its ``x_proj`` product give them, and ``paths[k, t]`` is the pixel that
direction k reads at step t (row-/column-major and reversed for the cross scan; windows for
LQMamba's local scan). One task owns a block of W neighbouring channels of one sample and walks
the K paths; at each step it handles the block's W channels together, so every operation,
the recurrence included, runs across SIMD lanes (W channels are W independent recurrences),
and the transcendental functions are vectorised polynomials (:mod:`iqa.ops.fast_math`). Δ
exists only for the block and the step at hand; the cross scan's merge (VMamba's
``CrossMerge``) accumulates in the output; the local scan keeps the K outputs apart for its
per-direction gates.

The backward pass walks each path forward once to store the block's states h_t, Δ_t and
sigmoid(δ_t) (δ = W_Δ r + bias, softplus' = sigmoid), then back with λ_t = ∂loss/∂h_t (the
adjoint of :mod:`iqa.ops.scan_numba`). Each gradient is written once: ∂u by the task that owns
the block; per-channel ∂W_Δ, ∂bias, ∂A, ∂D summed over the steps per sample (float32 over 128
steps, then float64); ∂r, ∂B, ∂C of a pixel as sums over the block's channels, added up over
the blocks by torch afterwards.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange

from iqa.ops.fast_math import COEFFICIENTS, F32, KERNEL, constants, dot32, exp32, sigmoid_given32, softplus_given32

_FLUSH = 128  # steps summed in float32 before the per-channel gradients are added in float64


@numba.njit(cache=True, inline="always")
def _load_block(weight, A, bias, D, k, block, w, a, bias_block, D_block) -> None:
    """The block's per-channel parameters of direction k as small contiguous arrays."""
    for r in range(w.shape[0]):
        for j in range(w.shape[1]):
            w[r, j] = weight[k, r, block, j]
    for n in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[n, j] = A[k, n, block, j]
    for j in range(bias_block.size):
        bias_block[j] = bias[k, block, j]
        D_block[j] = D[k, block, j]


@numba.njit(cache=True, inline="always")
def _preactivation(ranked, b, p, k, w, bias_block, out) -> None:
    """out = W_Δ r + bias for the block's channels at pixel p (before softplus)."""
    rank, r = w.shape[0], 0
    for j in range(out.size):
        out[j] = bias_block[j]
    while r + 4 <= rank:  # four ranks per pass over the lanes, then two, then one
        c0, c1, c2, c3 = ranked[b, p, k, r], ranked[b, p, k, r + 1], ranked[b, p, k, r + 2], ranked[b, p, k, r + 3]
        for j in range(out.size):
            out[j] += w[r, j] * c0 + w[r + 1, j] * c1 + w[r + 2, j] * c2 + w[r + 3, j] * c3
        r += 4
    if r + 2 <= rank:
        c0, c1 = ranked[b, p, k, r], ranked[b, p, k, r + 1]
        for j in range(out.size):
            out[j] += w[r, j] * c0 + w[r + 1, j] * c1
        r += 2
    if r < rank:
        c0 = ranked[b, p, k, r]
        for j in range(out.size):
            out[j] += w[r, j] * c0


@numba.njit(cache=True, parallel=True, **KERNEL)
def _forward(u, ranked, weight, bias, A, B, C, D, paths, y, table):
    """u (batch, P, blocks, W); ranked (batch, P, K, R); weight (K, R, blocks, W); A (K, N,
    blocks, W); bias, D (K, blocks, W); B, C (batch, P, K, N); paths (K, P); adds the outputs to
    y (batch, 1 | K, P, blocks, W), zeros (1: the directions summed)."""
    batch, pixels, blocks, width = u.shape
    directions, n_state, rank = A.shape[0], A.shape[1], weight.shape[1]
    merged, coefficients = y.shape[1] == 1, constants(table)
    for task in prange(batch * blocks):
        b, block = task // blocks, task % blocks
        w, a, h = np.empty((rank, width), F32), np.empty((n_state, width), F32), np.empty((n_state, width), F32)
        bias_block, D_block = np.empty(width, F32), np.empty(width, F32)
        delta, decay = np.empty(width, F32), np.empty(width, F32)
        for k in range(directions):
            _load_block(weight, A, bias, D, k, block, w, a, bias_block, D_block)
            h[:] = 0.0
            yk = 0 if merged else k
            for t in range(pixels):
                p = paths[k, t]
                _preactivation(ranked, b, p, k, w, bias_block, delta)
                for j in range(width):
                    decay[j] = exp32(-abs(delta[j]), coefficients)
                for j in range(width):
                    delta[j] = softplus_given32(delta[j], decay[j], coefficients)
                for n in range(n_state):
                    Bn, Cn, with_D = B[b, p, k, n], C[b, p, k, n], F32(1.0) if n == 0 else F32(0.0)
                    for j in range(width):
                        decay[j] = exp32(delta[j] * a[n, j], coefficients)
                    for j in range(width):
                        state = decay[j] * h[n, j] + delta[j] * u[b, p, block, j] * Bn
                        h[n, j] = state
                        y[b, yk, p, block, j] += with_D * D_block[j] * u[b, p, block, j] + Cn * state


@numba.njit(cache=True, parallel=True, **KERNEL)
def _backward(u, ranked, weight, bias, A, B, C, D, paths, grad_y,
              du, dW, dbias, dA, dD, dr_parts, dB_parts, dC_parts, table):
    """Writes du (like u); per sample dW (batch, K, R, blocks, W), dA (batch, K, N, blocks, W),
    dbias, dD (batch, K, blocks, W); per block dr_parts (batch, blocks, K, P, R), dB_parts,
    dC_parts (batch, blocks, K, P, N): sums over the block's channels."""
    batch, pixels, blocks, width = u.shape
    directions, n_state, rank = A.shape[0], A.shape[1], weight.shape[1]
    merged, coefficients = grad_y.shape[1] == 1, constants(table)
    for task in prange(batch * blocks):
        b, block = task // blocks, task % blocks
        w, a = np.empty((rank, width), F32), np.empty((n_state, width), F32)
        bias_block, D_block = np.empty(width, F32), np.empty(width, F32)
        states = np.empty((pixels + 1, n_state, width), F32)  # states[t + 1] = h_t, states[0] = 0
        deltas, slopes = np.empty((pixels, width), F32), np.empty((pixels, width), F32)
        lam, decay_n = np.empty((n_state, width), F32), np.empty(width, F32)
        g, ddelta, du_block = np.empty(width, F32), np.empty(width, F32), np.empty(width, F32)
        lam_delta = np.empty((pixels, n_state, width), F32)
        gW, gA = np.empty((rank, width), F32), np.empty((n_state, width), F32)
        g_bias, gD = np.empty(width, F32), np.empty(width, F32)
        sum_W, sum_A = np.empty((rank, width)), np.empty((n_state, width))
        sum_bias, sum_D = np.empty(width), np.empty(width)
        states[0] = 0.0
        for k in range(directions):
            _load_block(weight, A, bias, D, k, block, w, a, bias_block, D_block)
            yk = 0 if merged else k
            for t in range(pixels):  # forward: Δ, sigmoid(δ) and the states along the path
                p = paths[k, t]
                _preactivation(ranked, b, p, k, w, bias_block, g)
                for j in range(width):
                    ddelta[j] = exp32(-abs(g[j]), coefficients)
                for j in range(width):
                    deltas[t, j] = softplus_given32(g[j], ddelta[j], coefficients)
                    slopes[t, j] = sigmoid_given32(g[j], ddelta[j], coefficients)
                for n in range(n_state):
                    Bn = B[b, p, k, n]
                    for j in range(width):
                        decay_n[j] = exp32(deltas[t, j] * a[n, j], coefficients)
                    for j in range(width):
                        states[t + 1, n, j] = decay_n[j] * states[t, n, j] + deltas[t, j] * u[b, p, block, j] * Bn
            lam[:] = 0.0
            sum_W[:], sum_A[:], sum_bias[:], sum_D[:] = 0.0, 0.0, 0.0, 0.0
            for t in range(pixels - 1, -1, -1):  # backward along the path
                p = paths[k, t]
                if (pixels - 1 - t) % _FLUSH == 0:
                    gW[:], gA[:], g_bias[:], gD[:] = 0.0, 0.0, 0.0, 0.0
                for j in range(width):
                    g[j] = grad_y[b, yk, p, block, j]
                    gD[j] += g[j] * u[b, p, block, j]
                    du_block[j] = g[j] * D_block[j]
                    ddelta[j] = 0.0
                for n in range(n_state):
                    Bn, Cn = B[b, p, k, n], C[b, p, k, n]
                    for j in range(width):
                        decay_n[j] = exp32(deltas[t, j] * a[n, j], coefficients)
                    for j in range(width):
                        delta, ub, decay = deltas[t, j], u[b, p, block, j], decay_n[j]
                        lam_t = lam[n, j] + g[j] * Cn
                        d_exponent = lam_t * states[t, n, j] * decay  # ∂loss/∂(Δ_t A_n)
                        gA[n, j] += d_exponent * delta
                        ddelta[j] += d_exponent * a[n, j] + lam_t * Bn * ub
                        du_block[j] += lam_t * delta * Bn
                        lam_delta[t, n, j] = lam_t * delta  # ∂B_t = Σ_j λ_t Δ_t u_t
                        lam[n, j] = lam_t * decay
                for j in range(width):
                    ddelta[j] *= slopes[t, j]  # now ∂loss/∂δ
                    slopes[t, j] = ddelta[j]
                    g_bias[j] += ddelta[j]
                for r in range(rank):
                    c = ranked[b, p, k, r]
                    for j in range(width):
                        gW[r, j] += ddelta[j] * c
                if k == 0:
                    for j in range(width):
                        du[b, p, block, j] = du_block[j]
                else:
                    for j in range(width):
                        du[b, p, block, j] += du_block[j]
                if (pixels - 1 - t) % _FLUSH == _FLUSH - 1 or t == 0:
                    sum_W += gW
                    sum_A += gA
                    sum_bias += g_bias
                    sum_D += gD
            for t in range(pixels):  # the sums over the block's channels
                p = paths[k, t]
                for n in range(n_state):
                    dB_parts[b, block, k, p, n] = dot32(lam_delta[t, n], u[b, p, block], width)
                    dC_parts[b, block, k, p, n] = dot32(grad_y[b, yk, p, block], states[t + 1, n], width)
                for r in range(rank):
                    dr_parts[b, block, k, p, r] = dot32(w[r], slopes[t], width)
            dW[b, k, :, block] = sum_W
            dA[b, k, :, block] = sum_A
            dbias[b, k, block] = sum_bias
            dD[b, k, block] = sum_D


def _block_width(batch: int, dim: int) -> int:
    """Channels per task: the widest divisor of ``dim`` up to 256, a multiple of 8 (whole AVX2
    vectors) where ``dim`` has one, that still gives two tasks per thread."""
    divisors = [width for width in range(min(dim, 256), 0, -1) if dim % width == 0]
    widths = [width for width in divisors if width % 8 == 0] or divisors
    enough = [width for width in widths if batch * (dim // width) >= 2 * numba.get_num_threads()]
    return enough[0] if enough else widths[-1]


def _array(tensor: torch.Tensor, *shape: int) -> np.ndarray:
    """An fp32 C-contiguous numpy array (a copy only where needed), optionally reshaped."""
    array = tensor.detach().float().contiguous().numpy()
    return array.reshape(shape) if shape else array


class FusedDirectionalScan(torch.autograd.Function):
    """(u, r, W_Δ, bias, A, B, C, D) → the K directions' S6 outputs, pixel-major; fp32."""

    @staticmethod
    def forward(ctx, u, ranked, dt_weight, delta_bias, A, B, C, D, paths, merge):
        batch, pixels, dim = u.shape
        directions = ranked.shape[2]
        width = _block_width(batch, dim)
        blocks = dim // width
        y = torch.zeros(batch, 1 if merge else directions, pixels, dim)
        _forward(*_kernel_inputs(u, ranked, dt_weight, delta_bias, A, B, C, D, width), _paths(paths),
                 y.numpy().reshape(batch, -1, pixels, blocks, width), COEFFICIENTS)
        ctx.save_for_backward(u, ranked, dt_weight, delta_bias, A, B, C, D, paths)
        ctx.width = width
        return y[:, 0] if merge else y

    @staticmethod
    def backward(ctx, grad_y):
        u, ranked, dt_weight, delta_bias, A, B, C, D, paths = ctx.saved_tensors
        batch, pixels, dim = u.shape
        directions, rank, n_state = ranked.shape[2], ranked.shape[3], A.shape[1]
        width = ctx.width
        blocks = dim // width
        du = torch.empty(u.shape)
        dW, dA = torch.empty(batch, directions, rank, dim), torch.empty(batch, directions, n_state, dim)
        dbias, dD = torch.empty(batch, directions, dim), torch.empty(batch, directions, dim)
        dr_parts = torch.empty(batch, blocks, directions, pixels, rank)
        dB_parts, dC_parts = (torch.empty(batch, blocks, directions, pixels, n_state) for _ in range(2))
        grad_y = grad_y[:, None] if grad_y.dim() == 3 else grad_y
        _backward(*_kernel_inputs(u, ranked, dt_weight, delta_bias, A, B, C, D, width), _paths(paths),
                  _array(grad_y, batch, -1, pixels, blocks, width), du.numpy().reshape(batch, pixels, blocks, width),
                  dW.numpy().reshape(batch, directions, rank, blocks, width),
                  dbias.numpy().reshape(batch, directions, blocks, width),
                  dA.numpy().reshape(batch, directions, n_state, blocks, width),
                  dD.numpy().reshape(batch, directions, blocks, width), dr_parts.numpy(), dB_parts.numpy(),
                  dC_parts.numpy(), COEFFICIENTS)

        def pixel_major(parts: torch.Tensor) -> torch.Tensor:  # (batch, blocks, K, P, ·) → (batch, P, K, ·)
            return parts.sum(1).transpose(1, 2)

        return (du, pixel_major(dr_parts), dW.sum(0).transpose(1, 2), dbias.sum(0).view(delta_bias.shape),
                dA.sum(0).transpose(1, 2).reshape(A.shape), pixel_major(dB_parts), pixel_major(dC_parts),
                dD.sum(0).view(D.shape), None, None)


def _paths(paths: torch.Tensor) -> np.ndarray:
    return paths.to(torch.int32).contiguous().numpy()


def _kernel_inputs(u, ranked, dt_weight, delta_bias, A, B, C, D, width: int) -> tuple[np.ndarray, ...]:
    """The kernels' arrays: channels split into blocks of ``width``; per-channel parameters
    channel-last, (K, ·, blocks, width)."""
    batch, pixels, dim = u.shape
    directions, blocks = dt_weight.shape[0], dim // width
    return (_array(u, batch, pixels, blocks, width), _array(ranked),
            _array(dt_weight.transpose(1, 2), directions, -1, blocks, width),
            _array(delta_bias, directions, blocks, width),
            _array(A.view(directions, dim, -1).transpose(1, 2), directions, -1, blocks, width),
            _array(B), _array(C), _array(D, directions, blocks, width))


def directional_scan_numba(u, ranked, dt_weight, delta_bias, A, B, C, D, paths: torch.Tensor,
                           merge: bool) -> torch.Tensor:
    """SS2D's K selective scans on CPU, every tensor pixel-major (P = pixels of the map).

    u (batch, P, dim), the map all directions read; ranked (batch, P, K, R), the rank-R
    projection that dt_weight (K, dim, R) and delta_bias (K·dim,) turn into Δ before softplus;
    A (K·dim, N); B, C (batch, P, K, N); D (K·dim,); paths (K, P) int32, the pixel read at each
    step. Returns (batch, P, dim), the sum over directions, if ``merge``, else (batch, K, P,
    dim). Gradients for all tensors but ``paths``.
    """
    return FusedDirectionalScan.apply(u, ranked, dt_weight, delta_bias, A, B, C, D, paths, merge)
