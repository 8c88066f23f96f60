"""Visual prompts on a transformers vision-language model (a tiny random LLaVA saved locally)."""

from __future__ import annotations

import pytest
import torch

from iqa.models.base import ConfigurationError
from iqa.models.pipeline import ScoringPipeline
from iqa.models.prompts import OverlayPrompt
from iqa.registry import create_model


@pytest.fixture(scope="module")
def model(tiny_vlm_dir):
    return create_model("vp_mllm", hf_folder=str(tiny_vlm_dir / "llava"), dtype="float32")


def test_geometry_and_normalisation_come_from_the_processor(model):
    assert model.fixed_input_size == 28 and model.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    image_token = model.backbone.config.image_token_index
    assert (model.input_ids == image_token).sum() == 4  # 2×2 patches, the CLS feature dropped


def test_qalign5_appends_the_answer_prefix(tiny_vlm_dir, model):
    qalign = create_model("vp_mllm", hf_folder=str(tiny_vlm_dir / "llava"), dtype="float32",
                          quality_score_type="qalign5")
    assert qalign.input_ids.shape[1] > model.input_ids.shape[1]
    assert qalign.readout.words == ("excellent", "good", "fair", "poor", "bad")


def test_only_the_prompt_receives_gradients(model):
    pipeline = ScoringPipeline(model, OverlayPrompt(), input_size=28).train()
    assert not model.backbone.training
    scores = pipeline(torch.rand(2, 3, 28, 28))
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()
    scores.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pipeline.prompt.parameters())
    assert not any(p.requires_grad or p.grad is not None for p in model.parameters())


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="model.hf_folder"):
        create_model("vp_mllm", hf_folder=None)
    with pytest.raises(OSError):
        create_model("vp_mllm", hf_folder=str(tmp_path / "absent"))
