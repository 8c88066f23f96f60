"""``fast_dev_run`` through the real training code for every model × prompt option."""

from __future__ import annotations

import pytest
import torch

from iqa.experiment import train
from tests.conftest import CONF

MODEL_OVERRIDES = {  # tiny variants of each model option
    "cnniqa": ["data.crop_size=32"],
    "resnet18": ["data.crop_size=32"],
    "resnet50": ["data.crop_size=32"],
    "resnet101": ["data.crop_size=32"],
    "resnet152": ["data.crop_size=32"],
    "timm": ["model.name=test_efficientnet", "data.crop_size=32"],
    "vit": ["model.size=tiny", "model.img_size=32", "data.crop_size=32"],
    "swin": ["model.size=tiny", "model.img_size=64", "data.crop_size=64"],
    "loda": ["model.vit_embed_dim=32", "model.vit_depth=2", "model.vit_num_heads=2", "model.cnn=resnet10t",
             "model.latent_dim=16", "data.crop_size=224", "data.n_test_crops=1"],
    "vp_mplug": ["model.hf_folder={vlm_dir}/mplug_owl2", "model.dtype=float32", "data.crop_size=28",
                 "data.n_test_crops=1"],
    "vp_mllm": ["model.hf_folder={vlm_dir}/llava", "model.dtype=float32", "data.crop_size=28", "data.n_test_crops=1"],
    "qmamba": ["+model.depths=[1,1,1,1]", "+model.dims=16", "data.crop_size=32"],
}
FROZEN_MODELS = {"vp_mplug", "vp_mllm"}  # nothing trains without a prompt
PROMPT_OVERRIDES = {"none": [], "padding": ["prompt.size=4"], "patch": ["prompt.size=8"], "overlay": [],
                    "styleprompt": ["prompt.n_components=2"], "ssf": [], "cross_attn_prompt": [], "conv_prompt": []}
FEATURE_PROMPTS = {"styleprompt", "ssf", "cross_attn_prompt", "conv_prompt"}
PIXEL_PROMPTS = {"padding", "patch", "overlay"}
ZERO_HEAD_MODELS = {"timm", "vit", "swin", "resnet18", "resnet50", "resnet101", "resnet152"}  # head starts at 0
STAGED_MODELS = {"qmamba"}  # models whose stages feature prompts modulate  # prompts on the stages of a backbone
PAIRS = [(m, p) for m in MODEL_OVERRIDES for p in PROMPT_OVERRIDES
         if not (m in FROZEN_MODELS and p == "none") and (p not in FEATURE_PROMPTS or m in STAGED_MODELS)]


def test_every_model_and_prompt_option_is_covered():
    assert set(MODEL_OVERRIDES) == {p.stem for p in (CONF / "model").glob("*.yaml")}
    assert set(PROMPT_OVERRIDES) == {p.stem for p in (CONF / "prompt").glob("*.yaml")}


def spy_on_optimizer(monkeypatch) -> dict[str, int]:
    """``seen["n"]``, after a step: how many numbers the optimizer updates."""
    seen = {}
    original_step = torch.optim.AdamW.step

    def spy(optimizer, *args, **kwargs):
        seen["n"] = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
        return original_step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    return seen


@pytest.mark.parametrize("model,prompt", PAIRS, ids=[f"{m}-{p}" for m, p in PAIRS])
def test_fast_dev_run(compose_train, tiny_vlm_dir, model, prompt, monkeypatch):
    overrides = [o.format(vlm_dir=tiny_vlm_dir) for o in MODEL_OVERRIDES[model]]
    if model in ZERO_HEAD_MODELS and prompt in PIXEL_PROMPTS:  # else refused: nothing would learn
        overrides.append("prompt.tune_head=true")
    cfg = compose_train(f"model={model}", f"prompt={prompt}", "trainer.fast_dev_run=true", "data.batch_size=2",
                        "data.eval_batch_size=2", *overrides, *PROMPT_OVERRIDES[prompt])
    seen = spy_on_optimizer(monkeypatch)
    results = train(cfg)
    assert results["test/n_images"] > 0
    if prompt != "none":  # only the prompt trains
        from hydra.utils import instantiate

        iqa_model, prompt_module = instantiate(cfg.model), instantiate(cfg.prompt)
        prompt_module.bind(iqa_model, cfg.data.crop_size)  # what ScoringPipeline does
        prompt_size = sum(p.numel() for p in prompt_module.parameters())
        if prompt_module.tune_head:
            prompt_size += sum(p.numel() for p in iqa_model.head.parameters())
        assert seen["n"] == prompt_size


def test_qmamba_linear_probe_trains_only_the_head(compose_train, monkeypatch):
    from hydra.utils import instantiate

    cfg = compose_train("model=qmamba", "model.tuning=linear_probe", "prompt=none", "trainer.fast_dev_run=true",
                        "data.batch_size=2", "data.eval_batch_size=2", *MODEL_OVERRIDES["qmamba"])
    seen = spy_on_optimizer(monkeypatch)
    assert train(cfg)["test/n_images"] > 0
    assert seen["n"] == sum(p.numel() for p in instantiate(cfg.model).head.parameters())


@pytest.mark.parametrize("model", sorted(FROZEN_MODELS))
def test_frozen_model_without_prompt_has_nothing_to_train(compose_train, tiny_vlm_dir, model):
    from iqa.models.base import ConfigurationError

    overrides = [o.format(vlm_dir=tiny_vlm_dir) for o in MODEL_OVERRIDES[model]]
    cfg = compose_train(f"model={model}", "prompt=none", "trainer.fast_dev_run=true", *overrides)
    with pytest.raises(ConfigurationError, match="nothing to train.*choose prompt="):
        train(cfg)
