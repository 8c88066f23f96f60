"""float32 exp, softplus and sigmoid for numba loops, as polynomials that LLVM vectorises.

numba calls libm's scalar ``exp``/``log1p`` (no SVML here): about 8 ns per element on the 2-core
dev CPU, so Δ = softplus(δ + bias) and exp(Δ A) cost more than the recurrence they feed. Written
as polynomials, a loop over a row vectorises (AVX2: 8 lanes): exp by Cephes-style range
reduction and Moshier's ``expf`` minimax coefficients, about 0.6 ns per element; log(1 + e) for
e ∈ [0, 1] by the atanh series; softplus about 1.0 ns. Accuracy: relative error below 2e-7 for exp
on [-87, 88] (clamped outside: exp(-87) ≈ 1.6e-38 stands for 0), softplus and sigmoid within a
few float32 ulps (tests/test_selective_scan.py).

Callers compile with ``**KERNEL``: ``fastmath=FASTMATH`` (fused multiply-add only, which the
polynomials need to vectorise well: 0.5 instead of 2–3 ns) and numpy's error model (a division
by zero gives inf instead of raising, so that loops with a division vectorise). Never with
reassociation: the round-to-nearest trick in :func:`exp32` relies on (x + 1.5·2²³) − 1.5·2²³ not
being simplified to x; NaN stays NaN.
:func:`dot64` (the kernels' float64 row reduction) and :func:`dot32` (a float32 sum over a short
row of channels) are compiled apart with reassociation.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

F32 = np.float32
FASTMATH = {"contract"}
_ROUND = F32(12582912.0)  # 1.5 · 2^23: adding and subtracting it rounds a float32 to an integer
_LN2_HI, _LN2_LO = F32(0.693359375), F32(-2.12194440e-4)  # ln 2 split so that k·ln2_hi is exact
KERNEL = {"fastmath": FASTMATH, "error_model": "numpy"}  # how kernels that call these compile


@numba.njit(inline="always")
def exp32(x: float) -> float:
    """e^x = 2^k e^r with k = round(x / ln 2), |r| ≤ ln2 / 2, e^r by a degree-7 polynomial."""
    x = F32(-87.0) if x < F32(-87.0) else x  # written so that NaN stays NaN
    x = F32(88.0) if x > F32(88.0) else x
    k = (x * F32(1.44269504) + _ROUND) - _ROUND
    r = x - k * _LN2_HI - k * _LN2_LO
    p = F32(1.9875691500e-4)
    p = p * r + F32(1.3981999507e-3)
    p = p * r + F32(8.3334519073e-3)
    p = p * r + F32(4.1665795894e-2)
    p = p * r + F32(1.6666665459e-1)
    p = p * r + F32(5.0000001201e-1)
    return (p * r * r + r + F32(1.0)) * _pow2(k)


@intrinsic
def _pow2(typingctx, k):
    """2^k for an integral float32 k ∈ [−126, 127]: the bits (k + 127) << 23, in int32 lanes."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        exponent = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(exponent, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen


@numba.njit(inline="always")
def _log1p_unit(e: float) -> float:
    """log(1 + e) for e ∈ [0, 1] as 2 atanh(s) = 2 Σ_k s^{2k+1} / (2k + 1), s = e / (2 + e) ∈ [0, 1/3]:
    seven terms (truncation below 2e-8 relative), no branch, and 1 + e is never rounded."""
    s = e / (F32(2.0) + e)
    z = s * s
    p = F32(1.0 / 13.0)
    p = p * z + F32(1.0 / 11.0)
    p = p * z + F32(1.0 / 9.0)
    p = p * z + F32(1.0 / 7.0)
    p = p * z + F32(1.0 / 5.0)
    p = p * z + F32(1.0 / 3.0)
    twice = s + s
    return twice + twice * z * p


@numba.njit(inline="always")
def softplus32(v: float) -> float:
    """log(1 + e^v) = max(v, 0) + log(1 + e^{−|v|}) (mamba_ssm's ``delta_softplus``)."""
    return softplus_given32(v, exp32(-abs(v)))


@numba.njit(inline="always")
def softplus_given32(v: float, e: float) -> float:
    """softplus(v) from e = e^{−|v|} (``exp32(-abs(v))``). Kernels compute e in a loop of its own:
    two short vectorised loops keep fewer constants live than one and run faster (1.0 instead
    of 1.4 ns per element on the 2-core dev CPU)."""
    return (v if v > F32(0.0) else F32(0.0)) + _log1p_unit(e)


@numba.njit(inline="always")
def sigmoid32(v: float) -> float:
    """1 / (1 + e^{−v}), the derivative of softplus, from e^{−|v|} ≤ 1 (never overflows)."""
    return sigmoid_given32(v, exp32(-abs(v)))


@numba.njit(inline="always")
def sigmoid_given32(v: float, e: float) -> float:
    """sigmoid(v) from e = e^{−|v|}, as :func:`softplus_given32`."""
    s = F32(1.0) / (F32(1.0) + e)
    return s if v >= F32(0.0) else e * s


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def dot64(a, b) -> float:
    """Σ a·b over two rows, accumulated in float64 (vectorised: reassociation is allowed here,
    never in the callers, whose polynomials need exact rounding)."""
    total = 0.0
    for p in range(a.size):
        total += numba.float64(a[p]) * b[p]
    return total


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def dot32(a, b, count: int) -> float:
    """Σ a[:count]·b[:count] in float32 (reassociated into vector lanes; for short rows)."""
    total = F32(0.0)
    for i in range(count):
        total += a[i] * b[i]
    return total
