"""float32 exp, softplus and sigmoid for numba loops, as polynomials that LLVM vectorises.

numba calls libm's scalar ``exp``/``log1p`` (no SVML here): about 8 ns per element on the 2-core
dev CPU, so Δ = softplus(δ + bias) and exp(Δ A) cost more than the recurrence they feed. Written
as polynomials, a loop over a row vectorises (AVX2: 8 lanes): exp by Cephes-style range
reduction and Moshier's ``expf`` minimax coefficients, 0.41 ns per element; log(1 + e) for
e ∈ [0, 1] by the atanh series; softplus 0.71 ns with e^{−|v|} in a loop of its own, 1.02 ns in
one loop (2-core dev CPU). Accuracy: relative error below 2e-7 for exp on [-87, 88] (clamped
outside: exp(-87) ≈ 1.6e-38 stands for 0), softplus and sigmoid within a few float32 ulps
(tests/test_selective_scan.py).

Kernels pass :data:`COEFFICIENTS` in as an array and turn it into a tuple with :func:`constants`
once, and every function here takes that tuple: constants the compiler cannot see stay in
registers through a vectorised loop instead of being reloaded in every iteration.

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
KERNEL = {"fastmath": FASTMATH, "error_model": "numpy"}  # how kernels that call these compile

# The polynomials' constants, handed to kernels as an array (see ``constants``). Positions:
_LOWEST, _HIGHEST, _LOG2E, _ROUND, _LN2_HI, _LN2_LO = 0, 1, 2, 3, 4, 5  # exp's range reduction
_EXP = 6  # 6..11: e^r ≈ 1 + r + r² p(r), p's coefficients (Moshier's expf), highest degree first
_ONE, _TWO, _ZERO = 12, 13, 14
_ATANH = 15  # 15..20: 1/13, 1/11, …, 1/3, the atanh series' coefficients from the highest degree
COEFFICIENTS = np.array([
    -87.0, 88.0, 1.44269504, 12582912.0,  # clamps (e^-87 ≈ 1.6e-38 stands for 0); 1.5·2²³ rounds to integers
    0.693359375, -2.12194440e-4,  # ln 2 split so that k · ln2_hi is exact
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1,
    1.0, 2.0, 0.0,
    1 / 13, 1 / 11, 1 / 9, 1 / 7, 1 / 5, 1 / 3,
], dtype=F32)
assert COEFFICIENTS.size == _ATANH + 6, "constants() lists every entry of COEFFICIENTS: keep the two in step"


@numba.njit(inline="always")
def constants(table) -> tuple:
    """:data:`COEFFICIENTS` (passed to the kernel as ``table``) as a tuple of float32 values that
    the kernel loads at run time. Written as literals, LLVM reloads every constant from memory in
    every iteration of a vectorised loop (about 20 extra instructions per exp); as values it keeps
    them in registers: exp 0.41 instead of 0.66 ns per element on the 2-core dev CPU."""
    return (table[0], table[1], table[2], table[3], table[4], table[5], table[6], table[7], table[8], table[9],
            table[10], table[11], table[12], table[13], table[14], table[15], table[16], table[17], table[18],
            table[19], table[20])


@numba.njit(inline="always")
def exp32(x: float, c: tuple) -> float:
    """e^x = 2^k e^r with k = round(x / ln 2), |r| ≤ ln2 / 2, e^r by a degree-7 polynomial;
    ``c`` from :func:`constants`."""
    x = c[_LOWEST] if x < c[_LOWEST] else x  # written so that NaN stays NaN
    x = c[_HIGHEST] if x > c[_HIGHEST] else x
    k = (x * c[_LOG2E] + c[_ROUND]) - c[_ROUND]
    r = x - k * c[_LN2_HI] - k * c[_LN2_LO]
    p = c[_EXP]
    p = p * r + c[_EXP + 1]
    p = p * r + c[_EXP + 2]
    p = p * r + c[_EXP + 3]
    p = p * r + c[_EXP + 4]
    p = p * r + c[_EXP + 5]
    return (p * r * r + r + c[_ONE]) * _pow2(k)


@intrinsic
def _pow2(typingctx, k):
    """2^k for an integral float32 k ∈ [−126, 127]: the bits (k + 127) << 23, in int32 lanes."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        exponent = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(exponent, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen


@numba.njit(inline="always")
def _log1p_unit(e: float, c: tuple) -> float:
    """log(1 + e) for e ∈ [0, 1] as 2 atanh(s) = 2 Σ_k s^{2k+1} / (2k + 1), s = e / (2 + e) ∈ [0, 1/3]:
    seven terms (truncation below 2e-8 relative), no branch, and 1 + e is never rounded."""
    s = e / (c[_TWO] + e)
    z = s * s
    p = c[_ATANH]
    p = p * z + c[_ATANH + 1]
    p = p * z + c[_ATANH + 2]
    p = p * z + c[_ATANH + 3]
    p = p * z + c[_ATANH + 4]
    p = p * z + c[_ATANH + 5]
    twice = s + s
    return twice + twice * z * p


@numba.njit(inline="always")
def softplus32(v: float, c: tuple) -> float:
    """log(1 + e^v) = max(v, 0) + log(1 + e^{−|v|}) (mamba_ssm's ``delta_softplus``)."""
    return softplus_given32(v, exp32(-abs(v), c), c)


@numba.njit(inline="always")
def softplus_given32(v: float, e: float, c: tuple) -> float:
    """softplus(v) from e = e^{−|v|} (``exp32(-abs(v), c)``). Kernels compute e in a loop of its
    own: two short vectorised loops keep fewer values live than one and run faster (module
    docstring)."""
    return (v if v > c[_ZERO] else c[_ZERO]) + _log1p_unit(e, c)


@numba.njit(inline="always")
def sigmoid32(v: float, c: tuple) -> float:
    """1 / (1 + e^{−v}), the derivative of softplus, from e^{−|v|} ≤ 1 (never overflows)."""
    return sigmoid_given32(v, exp32(-abs(v), c), c)


@numba.njit(inline="always")
def sigmoid_given32(v: float, e: float, c: tuple) -> float:
    """sigmoid(v) from e = e^{−|v|}, as :func:`softplus_given32`."""
    s = c[_ONE] / (c[_ONE] + e)
    return s if v >= c[_ZERO] else e * s


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
