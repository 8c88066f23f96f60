"""The selective scan as Triton kernels, forward and backward, for GPUs without mamba_ssm.

Same semantics and arguments as :func:`iqa.ops.selective_scan` (Mamba's Alg. 2, eqs. 2a–2b):

    Δ = softplus(delta + delta_bias),   h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t,
    y_t = C_t · h_t + D u_t,            out_t = y_t silu(z_t)

One program owns a block of channels of one sample with all N states, and walks through time
in chunks of ``BLOCK_T`` steps. Inside a chunk the recurrence is a parallel scan over the
operator (a, b) ∘ (a', b') = (a a', a' b + b') (:mod:`iqa.ops.scan_torch`); between chunks the
state stays in registers. Bias, softplus, D and the gate are fused, so Δ, y and the
(batch, dim, L, N) intermediates never reach memory. The forward pass stores the state at
the start of every chunk (batch, dim, chunks, N), which lets the backward pass recompute a
chunk's states from there.

The backward pass walks the chunks in reverse with the adjoint λ_t = ∂loss/∂h_t (equations in
:mod:`iqa.ops.scan_numba`), itself a reverse scan, λ_t = g_t C_t + exp(Δ_{t+1} A) λ_{t+1}.
It uses exp(Δ_t A) h_{t-1} = h_t − Δ_t B_t u_t, so no state needs shifting in time. Gradients
of parameters shared by channels are summed over the program's channels in the kernel (a block
never straddles two groups of B or C) and over batch and blocks by torch, so no atomics.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from iqa.ops.scan_shapes import grouped
from iqa.ops.selective_scan import _check_shapes

# Elements of one (BLOCK_D, BLOCK_N, BLOCK_T) tile. Chosen from ptxas's register report for sm_90 (no
# spills: forward with 4 warps, backward, which holds about ten tiles, with 8), not yet timed.
TILE_BUDGET = 1024


@triton.jit
def _combine(a_left, b_left, a_right, b_right):
    """(a, b) ∘ (a', b') = (a a', a' b + b'): two steps of h ← a h + b composed."""
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def _step(delta_ptr, bias, rows, t, mask, SOFTPLUS: tl.constexpr):
    """Δ (BLOCK_D, BLOCK_T), 0 where masked, and dΔ/d(delta) (σ of the softplus input, or 1)."""
    raw = tl.load(delta_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32) + bias[:, None]
    if SOFTPLUS:  # torch's threshold: softplus(x) = x above 20
        dt = tl.where(raw > 20.0, raw, tl.log(1.0 + tl.exp(raw)))
        slope = tl.sigmoid(raw)
    else:
        dt = raw
        slope = tl.full(raw.shape, 1.0, tl.float32)
    return tl.where(mask, dt, 0.0), slope


@triton.jit
def _matrix(ptr, b, channels, n, t, mask, group_size, stride_b, stride_g, stride_n, stride_t):
    """B or C as (BLOCK_D, BLOCK_N, BLOCK_T): channel c reads group c // group_size."""
    groups = channels // group_size
    offsets = (b * stride_b + groups[:, None, None] * stride_g + n[None, :, None] * stride_n
               + t[None, None, :] * stride_t)
    return tl.load(ptr + offsets, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _forward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                    out_ptr, last_ptr, chunk_ptr, dim, length, n_state, n_chunks,
                    B_group, B_sb, B_sg, B_sn, B_st, C_group, C_sb, C_sg, C_sn, C_st,
                    HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    b = tl.program_id(0)
    channels = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    steps = tl.arange(0, BLOCK_T)
    c_mask, n_mask = channels < dim, n < n_state
    cn_mask = c_mask[:, None] & n_mask[None, :]
    A = tl.load(A_ptr + channels[:, None] * n_state + n[None, :], mask=cn_mask, other=0.0).to(tl.float32)
    D = tl.load(D_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)  # zeros when absent, like bias
    bias = tl.load(bias_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)
    rows = (b * dim + channels) * length
    state_rows = (b * dim + channels[:, None]) * n_chunks * n_state + n[None, :]
    h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    for chunk in range(n_chunks):
        tl.store(chunk_ptr + state_rows + chunk * n_state, h, mask=cn_mask)
        t = chunk * BLOCK_T + steps
        mask = c_mask[:, None] & (t < length)[None, :]
        mask3 = cn_mask[:, :, None] & (t < length)[None, None, :]
        u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
        dt, _ = _step(delta_ptr, bias, rows, t, mask, SOFTPLUS)
        Bt = _matrix(B_ptr, b, channels, n, t, mask3, B_group, B_sb, B_sg, B_sn, B_st)
        Ct = _matrix(C_ptr, b, channels, n, t, mask3, C_group, C_sb, C_sg, C_sn, C_st)
        decay_acc, drive_acc = tl.associative_scan((tl.exp(dt[:, None, :] * A[:, :, None]),
                                                    (dt * u)[:, None, :] * Bt), 2, _combine)
        states = decay_acc * h[:, :, None] + drive_acc
        y = tl.sum(states * Ct, axis=1) + D[:, None] * u
        if HAS_Z:
            z = tl.load(z_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
            y *= z * tl.sigmoid(z)
        tl.store(out_ptr + rows[:, None] + t[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)
        h = tl.sum(tl.where(steps[None, None, :] == BLOCK_T - 1, states, 0.0), axis=2)  # padding keeps h
    tl.store(last_ptr + (b * dim + channels[:, None]) * n_state + n[None, :], h, mask=cn_mask)


@triton.jit
def _backward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, chunk_ptr,
                     grad_out_ptr, grad_last_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr,
                     dim, length, n_state, n_chunks,
                     B_group, B_sb, B_sg, B_sn, B_st, C_group, C_sb, C_sg, C_sn, C_st,
                     HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr,
                     B_VARYING: tl.constexpr, C_VARYING: tl.constexpr,
                     BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    """Gradients: du, ddelta, dz (batch, dim, L); dA (batch, dim, N); dD (batch, dim); dB and dC
    (batch, dim / BLOCK_D, N, L) summed over the block's channels if varying in time, else
    (batch, dim, N) summed over time."""
    b, block = tl.program_id(0), tl.program_id(1)
    channels = block * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    steps = tl.arange(0, BLOCK_T)
    c_mask, n_mask = channels < dim, n < n_state
    cn_mask = c_mask[:, None] & n_mask[None, :]
    cn_offsets = (b * dim + channels[:, None]) * n_state + n[None, :]
    A = tl.load(A_ptr + channels[:, None] * n_state + n[None, :], mask=cn_mask, other=0.0).to(tl.float32)
    D = tl.load(D_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)  # zeros when absent, like bias
    bias = tl.load(bias_ptr + channels, mask=c_mask, other=0.0).to(tl.float32)
    grad_last = tl.load(grad_last_ptr + cn_offsets, mask=cn_mask, other=0.0).to(tl.float32)
    rows = (b * dim + channels) * length
    state_rows = (b * dim + channels[:, None]) * n_chunks * n_state + n[None, :]
    shared_rows = (b * tl.num_programs(1) + block) * n_state * length + n[:, None] * length
    carry = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)  # λ at the first step of the later chunk
    dA = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dB_fixed = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dC_fixed = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dD = tl.zeros((BLOCK_D,), tl.float32)
    for i in range(n_chunks):
        chunk = n_chunks - 1 - i
        t = chunk * BLOCK_T + steps
        mask = c_mask[:, None] & (t < length)[None, :]
        mask3 = cn_mask[:, :, None] & (t < length)[None, None, :]
        u = tl.load(u_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
        dt, slope = _step(delta_ptr, bias, rows, t, mask, SOFTPLUS)
        Bt = _matrix(B_ptr, b, channels, n, t, mask3, B_group, B_sb, B_sg, B_sn, B_st)
        Ct = _matrix(C_ptr, b, channels, n, t, mask3, C_group, C_sb, C_sg, C_sn, C_st)
        drive = (dt * u)[:, None, :] * Bt
        decay_acc, drive_acc = tl.associative_scan((tl.exp(dt[:, None, :] * A[:, :, None]), drive), 2, _combine)
        h0 = tl.load(chunk_ptr + state_rows + chunk * n_state, mask=cn_mask, other=0.0)
        states = decay_acc * h0[:, :, None] + drive_acc
        g = tl.load(grad_out_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_Z:  # out = y silu(z): dz = g y silu'(z), and y receives g silu(z)
            z = tl.load(z_ptr + rows[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)
            y = tl.sum(states * Ct, axis=1) + D[:, None] * u
            sig = tl.sigmoid(z)
            tl.store(dz_ptr + rows[:, None] + t[None, :], g * y * sig * (1.0 + z * (1.0 - sig)), mask=mask)
            g = g * z * sig
        direct = g[:, None, :] * Ct + tl.where(t[None, None, :] == length - 1, grad_last[:, :, None], 0.0)
        next_mask = c_mask[:, None] & (t + 1 < length)[None, :]
        dt_next, _ = _step(delta_ptr, bias, rows, t + 1, next_mask, SOFTPLUS)
        decay_next = tl.where(next_mask[:, None, :], tl.exp(dt_next[:, None, :] * A[:, :, None]), 0.0)
        decay_rev, lam = tl.associative_scan((decay_next, direct), 2, _combine, reverse=True)
        lam += decay_rev * carry[:, :, None]
        carry = tl.sum(tl.where(steps[None, None, :] == 0, lam, 0.0), axis=2)
        d_exponent = lam * (states - drive)  # ∂loss/∂(Δ_t A) = λ_t exp(Δ_t A) h_{t-1}
        ddt = tl.sum(d_exponent * A[:, :, None] + lam * Bt * u[:, None, :], axis=1)
        du = tl.sum(lam * Bt, axis=1) * dt + g * D[:, None]
        dD += tl.sum(g * u, axis=1)
        tl.store(du_ptr + rows[:, None] + t[None, :], du, mask=mask)
        tl.store(ddelta_ptr + rows[:, None] + t[None, :], ddt * slope, mask=mask)
        dA += tl.sum(d_exponent * dt[:, None, :], axis=2)
        dB_t = lam * (dt * u)[:, None, :]
        dC_t = g[:, None, :] * states
        t_mask = n_mask[:, None] & (t < length)[None, :]
        if B_VARYING:
            tl.store(dB_ptr + shared_rows + t[None, :], tl.sum(dB_t, axis=0), mask=t_mask)
        else:
            dB_fixed += tl.sum(dB_t, axis=2)
        if C_VARYING:
            tl.store(dC_ptr + shared_rows + t[None, :], tl.sum(dC_t, axis=0), mask=t_mask)
        else:
            dC_fixed += tl.sum(dC_t, axis=2)
    tl.store(dA_ptr + cn_offsets, dA, mask=cn_mask)
    if not B_VARYING:
        tl.store(dB_ptr + cn_offsets, dB_fixed, mask=cn_mask)
    if not C_VARYING:
        tl.store(dC_ptr + cn_offsets, dC_fixed, mask=cn_mask)
    tl.store(dD_ptr + b * dim + channels, dD, mask=c_mask)


def _layout(matrix: torch.Tensor, dim: int) -> tuple[torch.Tensor, int, list[int], bool]:
    """B or C as the grouped view, its group size in channels, its (batch, group, N, time) strides
    with 0 on broadcast axes, and whether it varies in time."""
    view = grouped(matrix)
    strides = [0 if size == 1 else stride for size, stride in zip(view.shape, view.stride())]
    return view, dim // view.shape[1], strides, matrix.dim() > 2


def _blocks(dim: int, n_state: int, length: int, group_sizes: list[int], budget: int) -> tuple[int, int, int]:
    """BLOCK_D (a power of two dividing every varying group, so a block sees one group of B and
    C), BLOCK_N and BLOCK_T, the tile BLOCK_D × BLOCK_N × BLOCK_T about ``budget`` elements."""
    block_n = triton.next_power_of_2(n_state)
    block_d = min(32, triton.next_power_of_2(dim), max(budget // (16 * block_n), 1))
    while any(size % block_d for size in group_sizes):
        block_d //= 2
    block_t = max(16, min(128, triton.next_power_of_2(length), budget // (block_d * block_n)))
    return block_d, block_n, block_t


def _shared_grad(rows: torch.Tensor, view: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """The kernel's per-block (batch, dim / BLOCK_D, N, L) or per-channel (batch, dim, N)
    gradient of B or C, summed to ``matrix``'s shape."""
    if matrix.dim() == 2:
        return rows.sum(0).to(matrix.dtype)
    batch, groups = view.shape[:2]
    return rows.view(batch, groups, -1, *rows.shape[2:]).sum(2).reshape(matrix.shape).to(matrix.dtype)


class TritonScan(torch.autograd.Function):
    """(u, Δ, A, B, C, D, z, delta_bias) → (out, last state) by the kernels above."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        batch, dim, length = u.shape
        n_state = A.shape[1]
        zeros = u.new_zeros(dim, dtype=torch.float32)
        D_, bias_ = (D if D is not None else zeros).contiguous(), (delta_bias if delta_bias is not None else zeros)
        (Bv, B_group, B_strides, B_var), (Cv, C_group, C_strides, C_var) = _layout(B, dim), _layout(C, dim)
        varying = [size for size, var in ((B_group, B_var), (C_group, C_var)) if var]
        block_d, block_n, block_t = _blocks(dim, n_state, length, varying, TILE_BUDGET)
        n_chunks = triton.cdiv(length, block_t)
        u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
        z_ = z.contiguous() if z is not None else u
        out = torch.empty_like(u)
        last_state = u.new_empty(batch, dim, n_state, dtype=torch.float32)
        chunk_states = u.new_empty(batch, dim, n_chunks, n_state, dtype=torch.float32)
        _forward_kernel[(batch, triton.cdiv(dim, block_d))](
            u, delta, A, Bv, Cv, D_, z_, bias_.contiguous(), out, last_state, chunk_states,
            dim, length, n_state, n_chunks, B_group, *B_strides, C_group, *C_strides,
            HAS_Z=z is not None, SOFTPLUS=delta_softplus, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t,
            num_warps=4)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, chunk_states)
        ctx.delta_softplus, ctx.blocks = delta_softplus, (block_d, block_n, block_t)
        return out, last_state

    @staticmethod
    def backward(ctx, grad_out, grad_last):
        u, delta, A, B, C, D, z, delta_bias, chunk_states = ctx.saved_tensors
        block_d, block_n, block_t = ctx.blocks
        batch, dim, length = u.shape
        n_state, n_chunks = A.shape[1], chunk_states.shape[2]
        zeros = u.new_zeros(dim, dtype=torch.float32)
        D_, bias_ = (D if D is not None else zeros).contiguous(), (delta_bias if delta_bias is not None else zeros)
        (Bv, B_group, B_strides, B_var), (Cv, C_group, C_strides, C_var) = _layout(B, dim), _layout(C, dim)
        n_blocks = triton.cdiv(dim, block_d)

        def empty(*shape):
            return u.new_empty(*shape, dtype=torch.float32)

        du, ddelta = empty(batch, dim, length), empty(batch, dim, length)
        dz = empty(batch, dim, length) if z is not None else du  # not written without z
        dA_rows, dD_rows = empty(batch, dim, n_state), empty(batch, dim)
        dB_rows = empty(batch, n_blocks, n_state, length) if B_var else empty(batch, dim, n_state)
        dC_rows = empty(batch, n_blocks, n_state, length) if C_var else empty(batch, dim, n_state)
        _backward_kernel[(batch, n_blocks)](
            u, delta, A, Bv, Cv, D_, z.contiguous() if z is not None else u, bias_.contiguous(), chunk_states,
            grad_out.contiguous(), grad_last.contiguous(), du, ddelta, dz, dA_rows, dB_rows, dC_rows, dD_rows,
            dim, length, n_state, n_chunks, B_group, *B_strides, C_group, *C_strides,
            HAS_Z=z is not None, SOFTPLUS=ctx.delta_softplus, B_VARYING=B_var, C_VARYING=C_var,
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t, num_warps=8)
        return (du.to(u.dtype), ddelta.to(delta.dtype), dA_rows.sum(0).to(A.dtype),
                _shared_grad(dB_rows, Bv, B), _shared_grad(dC_rows, Cv, C),
                dD_rows.sum(0).to(D.dtype) if D is not None else None,
                dz.to(z.dtype) if z is not None else None,
                ddelta.sum((0, 2)).to(delta_bias.dtype) if delta_bias is not None else None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """The ``"triton"`` backend of :func:`iqa.ops.selective_scan`: CUDA tensors (or any, with
    ``TRITON_INTERPRET=1``); fp32 arithmetic, the output in u's dtype, the last state fp32."""
    _check_shapes(u, delta, A, B, C)
    out, last_state = TritonScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return (out, last_state) if return_last_state else out
