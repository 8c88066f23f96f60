"""VMamba backbone: golden outputs of the official code, scan orders, configuration checks."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from iqa.models.backbones import vmamba
from iqa.models.backbones.scans import CrossScan, LocalScan
from iqa.models.backbones.vmamba import SS2D, VSSM
from tests.conftest import FIXTURES

VMAMBA_FIXTURE = FIXTURES / "vmamba_tiny_public"
needs_fixture = pytest.mark.skipif(not VMAMBA_FIXTURE.is_dir(), reason=f"golden fixture {VMAMBA_FIXTURE} is absent")


def features_of(model: VSSM, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The fixture's tensors, captured with hooks on our modules (names as in its README)."""
    found: dict[str, torch.Tensor] = {}
    model.patch_embed.register_forward_hook(lambda m, i, out: found.update(features_patch_embed=out))
    for k, layer in enumerate(model.layers):
        layer.blocks.register_forward_hook(lambda m, i, out, k=k: found.update({f"features_stage{k}_blocks": out}))
        layer.downsample.register_forward_hook(lambda m, i, out, k=k: found.update({f"features_stage{k}": out}))
    model.classifier.head.register_forward_pre_hook(lambda m, i: found.update(features_prehead=i[0]))
    with torch.no_grad():
        found["logits"] = model(inputs)
    return found


@needs_fixture
def test_reproduces_the_official_vssm():
    config = json.loads((VMAMBA_FIXTURE / "config.json").read_text())["constructor_kwargs"]
    golden = load_file(VMAMBA_FIXTURE / "io.safetensors")
    model = VSSM(**config).eval()
    model.load_state_dict(load_file(VMAMBA_FIXTURE / "state_dict.safetensors"), strict=True)  # official names
    ours = features_of(model, golden["input"])
    assert set(golden) - {"input"} == set(ours)
    for name, tensor in ours.items():
        torch.testing.assert_close(tensor, golden[name], atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_cross_scan_orders_and_folds_back():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    xs = CrossScan().unfold(x)
    assert xs[0, 0, 0].tolist() == list(range(12))
    assert xs[0, 1, 0].tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert xs[0, 2, 0].tolist() == list(range(12))[::-1]
    torch.testing.assert_close(CrossScan().fold(xs, 3, 4), 4 * x, atol=0, rtol=0)


def test_local_scan_reads_windows_then_moves_across_them():
    scan = LocalScan(dim=8, window=2)
    xs = scan.unfold(torch.arange(16.0).view(1, 1, 4, 4))
    assert xs[0, 0, 0].tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]  # rows, then windows
    assert xs[0, 1, 0].tolist() == [0, 4, 1, 5, 8, 12, 9, 13, 2, 6, 3, 7, 10, 14, 11, 15]  # columns, then windows
    assert xs[0, 3, 0].tolist() == xs[0, 1, 0].flip(0).tolist()


@pytest.mark.parametrize("height, width", [(4, 6), (5, 7)])  # tiled, and zero-padded to whole windows
def test_local_scan_folds_back_to_its_pixels(height, width):
    scan = LocalScan(dim=8, window=2)
    scan.attn = nn.Identity()  # without the per-direction gate, fold(unfold(x)) sums 4 copies of x
    x = torch.randn(2, 3, height, width)
    xs = scan.unfold(x)
    assert xs.shape[-1] == scan.length(height, width) == 4 * ((height + 1) // 2) * ((width + 1) // 2)
    torch.testing.assert_close(scan.fold(xs, height, width), 4 * x, atol=0, rtol=0)


@pytest.mark.parametrize("scan", ["cross", "local"])
def test_scan_paths_are_the_unfolded_pixel_indices(scan):
    module = CrossScan() if scan == "cross" else LocalScan(dim=8, window=2)
    paths = module.paths(5, 7)
    padded = module.padded_size(5, 7)
    assert paths.dtype == torch.int32 and paths.shape == (4, module.length(5, 7))
    assert sorted(paths[1].tolist()) == list(range(padded[0] * padded[1]))  # each pixel once
    assert torch.equal(paths[2], paths[0].flip(0)) and torch.equal(paths[3], paths[1].flip(0))


@pytest.mark.skipif(vmamba.directional_scan_numba is None, reason="numba is not installed")
@pytest.mark.parametrize("d_state", [1, 16])
@pytest.mark.parametrize("scan, height, width", [("cross", 5, 7), ("cross", 6, 4), ("local", 5, 7), ("local", 4, 6)])
def test_ss2d_fused_cpu_scan_equals_the_unfolded_path(scan, height, width, d_state):
    """Same weights, same input: output and every gradient agree with the unfold → scan → fold path."""
    torch.manual_seed(0)
    op = SS2D(8, d_state=d_state, scan=LocalScan(16, window=2) if scan == "local" else None, scan_backend="torch")
    x = torch.randn(2, 8, height, width, requires_grad=True)
    weights = torch.randn(2, 8, height, width)
    results = []
    for fused in (True, False):
        op.fused_scan = fused
        out = op(x)
        results.append((out, torch.autograd.grad((out * weights).sum(), [x, *op.parameters()])))
    (fused_out, fused_grads), (plain_out, plain_grads) = results
    torch.testing.assert_close(fused_out, plain_out, rtol=1e-5, atol=1e-5)
    names = ["input"] + [name for name, _ in op.named_parameters()]
    for name, a, b in zip(names, fused_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, b.abs().max().item()), msg=name)


@pytest.mark.parametrize("argument", [dict(forward_type="v2"), dict(norm_layer="ln"), dict(downsample_version="v2"),
                                      dict(patchembed_version="v1"), dict(scan="diagonal")])
def test_unsupported_configurations_are_refused(argument):
    with pytest.raises(ValueError, match=next(iter(argument))):
        VSSM(depths=[1, 1], dims=8, **argument)
