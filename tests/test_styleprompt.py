"""StylePrompt and SSF on a frozen QMamba: identity at step 0, only the prompt trains, parameter
counts, the local scan, and starting a run from a previous run (the transferable task)."""

from __future__ import annotations

import pytest
import torch

from iqa.models.base import ConfigurationError
from iqa.models.pipeline import ScoringPipeline
from iqa.models.prompts import ConvPrompt, CrossAttentionPrompt, ScaleShiftPrompt, StylePrompt
from iqa.registry import create_model

TINY = dict(depths=[1, 1, 1, 1], dims=16)


def tiny_qmamba(scan: str = "cross") -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("qmamba", scan=scan, **TINY).eval()


@pytest.mark.parametrize("prompt", [StylePrompt(), StylePrompt(spatial_size=[7, 7, 2, 1]), ScaleShiftPrompt(),
                                    CrossAttentionPrompt(), ConvPrompt()],
                         ids=["style-1x1", "style-per-stage", "ssf", "cross-attn", "conv"])
@pytest.mark.parametrize("scan", ["cross", "local"])
def test_prompted_model_equals_the_frozen_model_at_step_zero(prompt, scan):
    model = tiny_qmamba(scan)
    images = torch.rand(2, 3, 64, 64)
    plain = ScoringPipeline(model).eval()(images)
    prompted = ScoringPipeline(model, prompt).eval()(images)
    torch.testing.assert_close(prompted, plain, rtol=0, atol=0)


def test_only_the_prompt_trains_and_every_part_of_it_learns():
    pipeline = ScoringPipeline(tiny_qmamba(), StylePrompt(n_components=3, spatial_size=2)).train()
    assert not pipeline.model.training
    for _ in range(2):  # the zero-initialised affine layer makes the rest move from step 2 on
        pipeline.zero_grad()
        pipeline(torch.rand(2, 3, 64, 64)).sum().backward()
        with torch.no_grad():
            for parameter in pipeline.prompt.parameters():
                parameter -= 0.1 * parameter.grad
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pipeline.prompt.parameters())
    assert not any(p.requires_grad or p.grad is not None for p in pipeline.model.parameters())


def test_tune_head_also_trains_the_regression_head():
    pipeline = ScoringPipeline(tiny_qmamba(), StylePrompt(tune_head=True))
    trainable = {name for name, p in pipeline.named_parameters() if p.requires_grad}
    assert {"model.backbone.classifier.head.weight", "model.backbone.classifier.head.bias"} <= trainable
    assert all(name.startswith("prompt.") or ".classifier.head." in name for name in trainable)


def prompt_counts(size: str, scan: str) -> tuple[list[int], dict[str, int]]:
    """Stage widths and trainable parameters of Table 4's tuners, counted on the meta device."""
    with torch.device("meta"):
        model = create_model("qmamba", size=size, scan=scan)
        prompts = {"style": StylePrompt(), "ssf": ScaleShiftPrompt(), "cross": CrossAttentionPrompt(n_tokens=6),
                   "conv": ConvPrompt()}
        for prompt in prompts.values():
            prompt.bind(model, None)  # what ScoringPipeline does
    widths = model.stage_channels
    return widths, {name: sum(p.numel() for p in prompt.parameters()) for name, prompt in prompts.items()}


@pytest.mark.parametrize(("size", "scan", "style", "cross", "conv"), [
    ("tiny", "cross", 2_371_704, 3_147_840, 7_051_680),  # QMamba-T: widths 96, 192, 384, 768
    ("base", "local", 4_206_744, 5_589_760, 12_535_680),  # LQMamba-B, the paper's Tables 3-4: 128 ... 1024
])
def test_parameter_counts(size, scan, style, cross, conv):
    """docs/qmamba.md compares these with the paper's 3.83M, 6.1M, 12.17M and 28.33M (LQMamba-B)."""
    widths, counts = prompt_counts(size, scan)
    assert widths == [widths[0] * 2**i for i in range(4)]
    # per stage: 6 components of C, GAP→6 linear, C→C align, C→2C affine (all with biases): 3C² + 15C + 6
    assert counts["style"] == sum(6 * c + (c * 6 + 6) + (c * c + c) + (c * 2 * c + 2 * c) for c in widths) == style
    assert counts["ssf"] == 2 * sum(widths)
    assert counts["cross"] == sum(6 * c + 4 * (c * c + c) for c in widths) == cross
    assert counts["conv"] == sum(9 * c * c + c for c in widths) == conv


def test_lqmamba_b_is_the_papers_93_79m_backbone():
    with torch.device("meta"):
        model = create_model("qmamba", size="base", scan="local")
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 93.79


def test_feature_prompt_on_a_model_without_stages_is_refused():
    with pytest.raises(ConfigurationError, match="prompt=StylePrompt.*model=CNNIQA.*model=qmamba"):
        ScoringPipeline(create_model("cnniqa"), StylePrompt())
    with pytest.raises(ConfigurationError, match="prompt.spatial_size"):
        ScoringPipeline(tiny_qmamba(), StylePrompt(spatial_size=[7, 1]))


def test_transfer_starts_from_a_previous_run(compose_train):
    """Train QMamba on a source, then tune a StylePrompt from that run (model.init_from)."""
    from iqa.checkpoint import read_checkpoint
    from iqa.experiment import train
    from iqa.models.weights import WeightsMismatchError

    model = ["model=qmamba", "+model.depths=[1,1,1,1]", "+model.dims=16", "data.crop_size=32"]
    source = compose_train(*model, "trainer.max_epochs=1")
    train(source)
    source_ckpt = f"{source.paths.output_dir}/checkpoints/last.ckpt"
    trained = read_checkpoint(source_ckpt)["state_dict"]

    target = compose_train(*model, f"model.init_from={source_ckpt}", "prompt=styleprompt", "trainer.max_epochs=1")
    target.paths.output_dir = f"{target.paths.output_dir}_target"
    target.callbacks.checkpoint.dirpath = f"{target.paths.output_dir}/checkpoints"
    from hydra.utils import instantiate

    module = instantiate(target.module)
    for key, value in module.net.model.state_dict().items():
        torch.testing.assert_close(value, trained[f"net.model.{key}"], rtol=0, atol=0)
    train(target)
    prompt_only = read_checkpoint(f"{target.paths.output_dir}/checkpoints/last.ckpt")["state_dict"]
    assert prompt_only and all(key.startswith("net.prompt.") for key in prompt_only)

    other = compose_train(*model, f"model.init_from={target.paths.output_dir}/checkpoints/last.ckpt")
    with pytest.raises(Exception, match="holds no QMamba weights"):
        instantiate(other.module)
    cnn_run = compose_train("trainer.max_epochs=1", "model=cnniqa", "data.crop_size=32")
    cnn_run.paths.output_dir = f"{cnn_run.paths.output_dir}_cnn"
    cnn_run.callbacks.checkpoint.dirpath = f"{cnn_run.paths.output_dir}/checkpoints"
    train(cnn_run)
    with pytest.raises(WeightsMismatchError, match="not of QMamba"):
        create_model("qmamba", init_from=f"{cnn_run.paths.output_dir}/checkpoints/last.ckpt", **TINY)


@pytest.mark.parametrize("preset", ["qmamba_task_specific", "qmamba_universal", "qmamba_transfer"])
def test_presets_run(compose_train, preset):
    from iqa.experiment import train

    cfg = compose_train(f"experiment={preset}", "model=qmamba", "+model.depths=[1,1,1,1]", "+model.dims=16",
                        "data=synthetic", "data.crop_size=32", "data.batch_size=4", "data.eval_batch_size=4",
                        "data.n_test_crops=2", "trainer=cpu", "trainer.precision=32-true", "trainer.fast_dev_run=true")
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.scheduler.name, cfg.loss.terms) == (
        2e-4, 0.05, "step", {"smooth_l1": 1.0})
    assert cfg.trainer.gradient_clip_val == 5.0 and cfg.data.repeat == 10  # (max_epochs: the tiny run sets 1)
    assert train(cfg)["test/n_images"] > 0
