"""The Triton selective scan (:mod:`iqa.ops.scan_triton`) against the fp64 sequential reference
of tests/test_selective_scan.py: outputs, last state and the gradients of every input.

Without a GPU the kernels run in Triton's interpreter, which reads ``TRITON_INTERPRET=1`` when
triton is first imported; so all cases run once in a child process (``python -m
tests.test_scan_triton``) that prints the largest errors as JSON, and the tests read those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install '.[triton]')")

CASES = {  # name: (batch, dim, L, N, B form, C form, optional inputs, softplus), tile budget
    "vmamba-groups4-N1-3chunks": ((2, 8, 37, 1, "grouped4", "grouped4", "D bias", True), 64),
    "shared-N16-gated-oddL": ((2, 4, 21, 16, "shared", "shared", "D z bias", True), 4096),
    "fixed-N16-2chunks": ((1, 4, 19, 16, "fixed", "fixed", "z", False), 256),
    "fixed-B-grouped3-C-N3": ((2, 6, 33, 3, "fixed", "grouped3", "D bias", False), 64),
    "L1-grouped2": ((2, 4, 1, 1, "grouped2", "grouped2", "D z bias", True), 4096),
}
TOLERANCE = 2e-5  # of the largest reference value (or 1), as tests/test_selective_scan.py


def _errors(ours: torch.Tensor, expected: torch.Tensor) -> float:
    return ((ours.double() - expected).abs().max() / max(1.0, expected.abs().max().item())).item()


def run_cases() -> dict:
    """Every case's largest scaled error per output and gradient, plus the dtype and dispatch checks."""
    from iqa.ops import scan_triton, selective_scan
    from tests.test_selective_scan import make_inputs, reference

    results = {}
    for name, (case, budget) in CASES.items():
        scan_triton.TILE_BUDGET = budget
        inputs, softplus = make_inputs(*case)
        out, last = selective_scan(**inputs, delta_softplus=softplus, return_last_state=True, backend="triton")
        expected, expected_last = reference(**inputs, delta_softplus=softplus)
        g = torch.Generator().manual_seed(1)
        weights, last_weights = torch.randn(out.shape, generator=g), torch.randn(last.shape, generator=g)
        names = [n for n, value in inputs.items() if value is not None]
        ours = torch.autograd.grad((out * weights).sum() + (last * last_weights).sum(), [inputs[n] for n in names])
        theirs = torch.autograd.grad((expected * weights.double()).sum()
                                     + (expected_last * last_weights.double()).sum(), [inputs[n] for n in names])
        errors = {"out": _errors(out, expected), "last state": _errors(last, expected_last)}
        errors.update({f"d{n}": _errors(a, b) if a.shape == b.shape else float("inf")
                       for n, a, b in zip(names, ours, theirs)})
        results[name] = errors
    scan_triton.TILE_BUDGET = 64
    inputs, _ = make_inputs(2, 8, 40, 4, "grouped4", "grouped4", "D z bias", True)
    low = {k: v.detach().bfloat16().requires_grad_() if v is not None else None for k, v in inputs.items()}
    out, last = scan_triton.selective_scan_triton(**low, delta_softplus=True, return_last_state=True)
    out.float().sum().backward()
    exact = selective_scan(**{k: v.detach().float() for k, v in low.items()}, delta_softplus=True, backend="torch")
    results["bf16"] = {"dtypes": [str(out.dtype), str(last.dtype)] + sorted({str(v.grad.dtype) for v in low.values()}),
                       "out": _errors(out.float(), exact.double())}
    return results


@pytest.fixture(scope="module")
def results() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    child = subprocess.run([sys.executable, "-m", "tests.test_scan_triton"], cwd=Path(__file__).parents[1], env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", CASES)
def test_outputs_last_state_and_gradients_match_the_fp64_reference(results, name):
    (batch, dim, length, n, b_form, c_form, optional, softplus), _ = CASES[name]
    expected = {"out", "last state", "du", "ddelta", "dA", "dB", "dC"}
    expected |= {key for key, flag in (("dD", "D"), ("dz", "z"), ("ddelta_bias", "bias")) if flag in optional}
    assert set(results[name]) == expected
    worst = {key: error for key, error in results[name].items() if not error <= TOLERANCE}
    assert not worst, f"{name}: errors above {TOLERANCE}: {worst}"


def test_half_precision_inputs_keep_their_dtype_and_compute_in_fp32(results):
    assert results["bf16"]["dtypes"] == ["torch.bfloat16", "torch.float32", "torch.bfloat16"]
    assert results["bf16"]["out"] < 1e-2  # bf16 rounding of the output only


def test_triton_backend_needs_cuda_or_the_interpreter():
    from iqa.ops import selective_scan
    from tests.test_selective_scan import make_inputs

    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the interpreter runs Triton on CPU tensors")
    inputs, _ = make_inputs(1, 4, 5, 1, "grouped2", "grouped2", "", False)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        selective_scan(**inputs, backend="triton")


@pytest.mark.parametrize(("blocks", "z_and_softplus", "b_varying"),
                         [((32, 1, 32), True, True), ((4, 16, 16), False, False)], ids=["vmamba-N1", "N16-fixed-B"])
def test_kernels_compile_for_a_hopper_gpu_without_one(blocks, z_and_softplus, b_varying):
    """What the interpreter does not check: the kernels lower to sm_90 machine code (triton's own ptxas)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from iqa.ops import scan_triton

    block_d, block_n, block_t = blocks
    constants = {"HAS_Z": z_and_softplus, "SOFTPLUS": z_and_softplus, "BLOCK_D": block_d, "BLOCK_N": block_n,
                 "BLOCK_T": block_t, "B_VARYING": b_varying, "C_VARYING": True}
    for kernel, warps in ((scan_triton._forward_kernel, 4), (scan_triton._backward_kernel, 8)):
        used = {name: value for name, value in constants.items() if name in kernel.arg_names}
        signature = {name: "constexpr" if name in used else "*bf16" if name in ("u_ptr", "z_ptr") else
                     "*fp32" if name.endswith("_ptr") else "i32" for name in kernel.arg_names}
        compiled = triton.compile(ASTSource(kernel, signature, used), target=GPUTarget("cuda", 90, 32),
                                  options={"num_warps": warps})
        assert compiled.asm["cubin"]


if __name__ == "__main__":
    print(json.dumps(run_cases()))
