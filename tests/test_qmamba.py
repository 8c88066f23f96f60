"""QMamba / LQMamba: Table 1 sizes, weight loading, stage hooks, training on CPU."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from iqa.models.backbones.vmamba import VSSM
from iqa.models.methods.qmamba import QMamba
from iqa.models.pretrained import PretrainedWeightsError
from iqa.models.weights import WeightsMismatchError
from iqa.registry import create_model
from tests.conftest import FIXTURES

VMAMBA_FIXTURE = FIXTURES / "vmamba_tiny_public"
FIXTURE_SIZES = dict(depths=[1, 1, 2, 1], dims=32)
TINY = dict(depths=[1, 1, 1, 1], dims=16, drop_path_rate=0.0)
needs_fixture = pytest.mark.skipif(not VMAMBA_FIXTURE.is_dir(), reason=f"golden fixture {VMAMBA_FIXTURE} is absent")

# QMamba paper, Table 1: parameters (M) and GFLOPs at 224², truncated to two decimals.
TABLE_1 = {
    ("tiny", "cross"): (27.99, 4.47), ("small", "cross"): (49.37, 8.71), ("base", "cross"): (87.53, 15.35),
    ("tiny", "local"): (29.87, 4.44), ("small", "local"): (52.91, 8.66), ("base", "local"): (93.79, 15.30),
}


def images(batch: int = 2, side: int = 64) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("size, scan", TABLE_1)
def test_parameter_counts_match_table_1(size, scan):
    with torch.device("meta"):  # shapes only: the full models in milliseconds
        model = create_model("qmamba", size=size, scan=scan)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert millions == pytest.approx(TABLE_1[size, scan][0], rel=1e-3)


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_qmamba_flops_match_table_1(size):
    with torch.device("meta"):
        model = create_model("qmamba", size=size)
    assert model.backbone.flops(224) / 1e9 == pytest.approx(TABLE_1[size, "cross"][1], rel=1e-3)


@needs_fixture
def test_checkpoint_reproduces_the_official_logits():
    golden = load_file(VMAMBA_FIXTURE / "io.safetensors")
    model = create_model("qmamba", **FIXTURE_SIZES, weights=str(VMAMBA_FIXTURE / "state_dict.safetensors")).eval()
    with torch.no_grad():
        scores = model(golden["input"])
    torch.testing.assert_close(scores, golden["logits"].squeeze(-1), atol=1e-4, rtol=1e-4)


@needs_fixture
def test_a_wrong_key_fails_with_a_clear_message_unless_not_strict(caplog):
    state = load_file(VMAMBA_FIXTURE / "state_dict.safetensors")
    with pytest.raises(WeightsMismatchError, match="of another shape"):
        create_model("qmamba", depths=[1, 1, 2, 1], dims=64, weights=state)
    state["layers.0.blocks.0.op.Dss"] = state.pop("layers.0.blocks.0.op.Ds")
    expected = r"missing \['layers.0.blocks.0.op.Ds'\], 1 unexpected \['layers.0.blocks.0.op.Dss'\]"
    with pytest.raises(WeightsMismatchError, match=expected):
        create_model("qmamba", **FIXTURE_SIZES, weights=state)
    model = create_model("qmamba", **FIXTURE_SIZES)
    with caplog.at_level(logging.WARNING):
        report = model.load_vmamba(state, strict=False)
    assert report.missing == ["layers.0.blocks.0.op.Ds"] and report.unexpected == ["layers.0.blocks.0.op.Dss"]
    assert "layers.0.blocks.0.op.Ds" in caplog.text
    torch.testing.assert_close(model.backbone.layers[3].blocks[0].op.Ds, state["layers.3.blocks.0.op.Ds"])


def test_imagenet_checkpoint_under_model_key_drops_the_1000_class_head(tmp_path):
    torch.manual_seed(0)
    imagenet = VSSM(**TINY, num_classes=1000)
    path = tmp_path / "vssm_ckpt.pth"
    torch.save({"model": imagenet.state_dict(), "epoch": 300}, path)
    model = create_model("qmamba", **TINY, pretrained=str(path))
    report = model.load_vmamba(path)
    assert report.dropped_head and report.missing == ["classifier.head.bias", "classifier.head.weight"]
    assert not report.unexpected
    torch.testing.assert_close(model.backbone.patch_embed[0].weight, imagenet.patch_embed[0].weight)
    assert model.backbone.classifier.head.weight.shape == (1, 128)


@needs_fixture
def test_lqmamba_loads_a_vmamba_checkpoint_and_starts_its_gates_fresh():
    state = load_file(VMAMBA_FIXTURE / "state_dict.safetensors")
    model = create_model("qmamba", scan="local", **FIXTURE_SIZES, weights=state)
    report = model.load_vmamba(state)
    assert report.missing and all(".op.scan.attn." in key for key in report.missing)
    torch.testing.assert_close(model.backbone.layers[2].blocks[1].op.A_logs, state["layers.2.blocks.1.op.A_logs"])
    with pytest.raises(WeightsMismatchError, match="unexpected"):  # an LQMamba state dict does not fit QMamba
        create_model("qmamba", **FIXTURE_SIZES, weights=model.backbone.state_dict())


def test_pretrained_must_be_a_local_file():
    with pytest.raises(PretrainedWeightsError, match="MzeroMiko/VMamba"):
        create_model("qmamba", **TINY, pretrained="imagenet")


@pytest.mark.parametrize("scan, side", [("cross", 64), ("local", 64), ("local", 72)])  # 72: windows need padding
def test_trains_on_cpu_and_every_parameter_gets_a_gradient(scan, side):
    torch.manual_seed(0)
    model = create_model("qmamba", scan=scan, scan_backend="torch", **TINY).train()
    scores = model(images(side=side))
    assert scores.shape == (2,)
    F.mse_loss(scores, torch.rand(2)).backward()
    no_gradient = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_gradient


def test_stage_hook_sees_and_transforms_every_stage():
    torch.manual_seed(0)
    model: QMamba = create_model("qmamba", scan="local", **TINY).eval()
    seen: list[tuple[int, tuple[int, ...]]] = []

    def record(stage: int, features: torch.Tensor) -> torch.Tensor:
        seen.append((stage, tuple(features.shape)))
        return features

    with torch.no_grad():
        plain = model(images())
        torch.testing.assert_close(model(images(), stage_hook=record), plain, atol=0, rtol=0)
        assert seen == [(0, (2, 16, 16, 16)), (1, (2, 32, 8, 8)), (2, (2, 64, 4, 4)), (3, (2, 128, 2, 2))]
        assert [tuple(f.shape) for f in model.stage_features(images())] == [shape for _, shape in seen]
        scaled = model(images(), stage_hook=lambda stage, features: features * 1.5 if stage == 1 else features)
    assert (scaled - plain).abs().max() > 1e-4


@pytest.mark.parametrize("scan", ["cross", "local"])
def test_fused_cpu_scan_gives_the_scores_and_gradients_of_the_unfolded_path(scan):
    """The whole model on CPU with SS2D's fused scan (default) and with ``fused_scan`` off."""
    torch.manual_seed(0)
    model = create_model("qmamba", scan=scan, scan_backend="torch", **TINY).train()
    ss2d = [m for m in model.modules() if hasattr(m, "fused_scan")]
    runs = []
    for fused in (True, False):
        for op in ss2d:
            op.fused_scan = fused
        scores = model(images(side=72))
        runs.append((scores, torch.autograd.grad(scores.square().sum(), list(model.parameters()))))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5 * max(1.0, b.abs().max().item()))
