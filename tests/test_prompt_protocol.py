"""The Prompt protocol (iqa/models/prompts/base.py) as ScoringPipeline uses it, what IQAModel declares
for it (``head``, ``stage_channels``), and QMamba's ``tuning``."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hydra.utils import instantiate

from iqa.errors import ConfigurationError
from iqa.models.base import IQAModel
from iqa.models.pipeline import ScoringPipeline
from iqa.models.prompts import (
    ConvPrompt,
    CrossAttentionPrompt,
    OverlayPrompt,
    PaddingPrompt,
    Prompt,
    ScaleShiftPrompt,
    StylePrompt,
)
from iqa.registry import create_model

TINY_QMAMBA = dict(depths=[1, 1, 1, 1], dims=16)
HEAD = {"backbone.classifier.head.weight", "backbone.classifier.head.bias"}


class RecordingPrompt(Prompt):
    """Adds a learnable constant to the pixels; records every :meth:`bind`."""

    def __init__(self) -> None:
        super().__init__(freeze_model=False)
        self.calls: list[tuple[IQAModel, int | None]] = []

    def bind(self, model: IQAModel, input_size: int | None) -> None:
        self.calls.append((model, input_size))
        self.offset = nn.Parameter(torch.zeros(()))

    def prompt_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return images + self.offset


def test_the_pipeline_binds_the_prompt_once_before_anything_reads_its_parameters():
    model, prompt = create_model("cnniqa"), RecordingPrompt()
    pipeline = ScoringPipeline(model, prompt, input_size=32)
    assert prompt.calls == [(model, 32)]
    assert "prompt.offset" in pipeline.state_dict() and "prompt.offset" in dict(pipeline.named_parameters())
    with torch.no_grad():
        prompt.offset.fill_(0.25)
    again = ScoringPipeline(model, RecordingPrompt(), input_size=32)  # as load_module: build, then load
    again.load_state_dict(pipeline.state_dict())
    assert again.prompt.offset.item() == 0.25 and len(again.prompt.calls) == 1


def test_defaults_leave_pixels_and_stages_alone():
    images = torch.rand(1, 3, 8, 8)
    assert RecordingPrompt().stage_hook is None and Prompt().prompt_pixels(images) is images
    assert OverlayPrompt().stage_hook is None
    style = StylePrompt()
    assert style.stage_hook is style and style.prompt_pixels(images) is images


def test_the_crop_size_reaches_a_pixel_prompt_from_data_crop_size_alone(compose_train):
    cfg = compose_train("prompt=overlay", "data.crop_size=48", "model=cnniqa")
    assert "image_size" not in cfg.prompt
    assert instantiate(cfg.module).net.prompt.overlay.shape == (3, 48, 48)


@pytest.mark.parametrize("prompt", [StylePrompt, ScaleShiftPrompt, CrossAttentionPrompt, ConvPrompt])
def test_a_feature_prompt_on_a_model_without_stages_is_refused(prompt):
    assert create_model("cnniqa").stage_channels is None
    with pytest.raises(ConfigurationError, match=f"prompt={prompt.__name__}.*model=CNNIQA exposes no stages.*"
                                                 "use model=qmamba"):
        ScoringPipeline(create_model("cnniqa"), prompt())


def test_tune_head_on_a_model_without_a_head_is_refused():
    assert create_model("cnniqa").head is None
    with pytest.raises(ConfigurationError, match="prompt.tune_head=true but model=CNNIQA has no regression head"):
        ScoringPipeline(create_model("cnniqa"), PaddingPrompt(size=4, tune_head=True), input_size=32)


def test_models_declare_their_head_and_stages():
    qmamba = create_model("qmamba", **TINY_QMAMBA)
    assert qmamba.stage_channels == [16, 32, 64, 128] and qmamba.head is qmamba.backbone.classifier.head
    resnet = create_model("resnet18")
    assert resnet.stage_channels is None and isinstance(resnet.head[-1], nn.Linear)


def test_qmamba_linear_probe_trains_only_the_head_and_keeps_the_backbone_in_eval():
    torch.manual_seed(0)
    pipeline = ScoringPipeline(create_model("qmamba", tuning="linear_probe", **TINY_QMAMBA)).train()
    model = pipeline.model
    assert {name for name, p in model.named_parameters() if p.requires_grad} == HEAD
    assert pipeline.training and model.training and not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())
    pipeline(torch.rand(2, 3, 32, 32)).sum().backward()
    assert all((p.grad is not None) == (name in HEAD) for name, p in model.named_parameters())


def test_qmamba_full_tuning_trains_everything():
    model = create_model("qmamba", **TINY_QMAMBA).train()
    assert all(p.requires_grad for p in model.parameters()) and model.backbone.training


def test_unknown_qmamba_tuning_is_refused():
    with pytest.raises(ConfigurationError, match="model.tuning='lora': QMamba offers full, linear_probe"):
        create_model("qmamba", tuning="lora", **TINY_QMAMBA)
