"""LoDa: golden outputs of the official code, its parameter manifest, freezing, flags, weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from iqa.models.base import HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD
from iqa.models.methods.loda import LoDa, official_key
from iqa.models.pretrained import PretrainedWeightsError
from iqa.models.weights import WeightsMismatchError
from iqa.registry import create_model
from tests.conftest import FIXTURES

LODA_FIXTURE = FIXTURES / "loda_tiny"
TINY = dict(vit_embed_dim=32, vit_depth=2, vit_num_heads=2, cnn="resnet10t", latent_dim=16)
needs_fixture = pytest.mark.skipif(not LODA_FIXTURE.is_dir(), reason=f"golden fixture {LODA_FIXTURE} is absent")


def tiny_loda(**kwargs) -> LoDa:
    torch.manual_seed(0)
    return create_model("loda", **{**TINY, **kwargs})


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def features_of(model: LoDa, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official fixture's tensors, captured with hooks on our modules."""
    found: dict[str, torch.Tensor] = {}
    model.cnn.register_forward_hook(
        lambda m, i, out: found.update({f"feature_model_out{k}": o for k, o in enumerate(out)}))
    model.extractor.register_forward_hook(lambda m, i, out: found.update(cnn_tokens=out))
    model.vit.pos_drop.register_forward_hook(lambda m, i, out: found.update(tokens_after_pos_embed=out))
    for k, block in enumerate(model.vit.blocks):
        block.register_forward_pre_hook(lambda m, i, k=k: found.update({f"block{k}_input": i[0]}))
        block.register_forward_hook(lambda m, i, out, k=k: found.update({f"block{k}_output": out}))
    model.vit.norm.register_forward_hook(lambda m, i, out: found.update(cls_feature=out[:, 0]))
    with torch.no_grad():
        found["output"] = model(inputs).unsqueeze(1)  # official shape (B, 1)
    return found


@needs_fixture
def test_reproduces_the_official_model():
    golden = load_file(LODA_FIXTURE / "io.safetensors")
    model = create_model("loda", vit_embed_dim=64, vit_depth=2, vit_num_heads=2, cnn="resnet10t", latent_dim=32,
                         weights=str(LODA_FIXTURE / "state_dict.safetensors")).eval()
    ours = features_of(model, golden["input"])
    assert set(golden) - {"input"} == set(ours)
    torch.testing.assert_close(ours.pop("output"), golden["output"], atol=1e-5, rtol=0)
    for name, tensor in ours.items():
        torch.testing.assert_close(tensor, golden[name], atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@needs_fixture
def test_default_model_matches_the_official_manifest():
    manifest = json.loads((LODA_FIXTURE / "keys_shapes.json").read_text())
    with torch.device("meta"):  # shapes only: no 118M random values to draw
        model = LoDa()  # ViT-B/16 + ResNet-50
    assert sum(p.numel() for p in model.parameters()) == manifest["counts"]["total_parameters"] == 118_234_176
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 8_927_488
    expected = {e["key"]: (tuple(e["shape"]), e["requires_grad"]) for e in manifest["state_dict"]}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    ours = {official_key(k): (tuple(v.shape), k in trainable) for k, v in model.state_dict().items()}
    assert ours == expected


def test_zero_scale_gives_the_plain_frozen_vit_and_head():
    model = tiny_loda().eval()
    inputs = images()
    with torch.no_grad():
        injected = model(inputs)
        model.injection_scale.zero_()
        plain_vit = model.vit.forward_head(model.vit.forward_features(inputs), pre_logits=True)
        torch.testing.assert_close(model(inputs), model.head(plain_vit).squeeze(-1), atol=0, rtol=0)
    assert (injected - model(inputs)).abs().max() > 1e-4


def test_only_extractor_injectors_scale_and_head_train():
    model = tiny_loda().train()
    model(images()).sum().backward()
    trainable_prefixes = ("extractor.", "injectors.", "injection_scale", "head.")
    for name, parameter in model.named_parameters():
        if name.startswith(trainable_prefixes):
            assert parameter.requires_grad and parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert name.startswith(("vit.", "cnn.")), name
            assert not parameter.requires_grad and parameter.grad is None, name


@pytest.mark.parametrize("bn_train_mode", [True, False])
def test_cnn_batchnorm_statistics_follow_the_flag(bn_train_mode):
    model = tiny_loda(cnn_bn_train_mode=bn_train_mode).train()
    assert model.cnn.training is bn_train_mode and model.extractor.training
    before = model.cnn.bn1.running_mean.clone()
    model(images())
    assert (not torch.equal(before, model.cnn.bn1.running_mean)) is bn_train_mode
    model.eval()
    assert not model.cnn.training
    before = model.cnn.bn1.running_mean.clone()
    model(images())
    assert torch.equal(before, model.cnn.bn1.running_mean)


def test_normalize_vit_renormalises_the_cnn_input():
    pixels = torch.rand(1, 3, 224, 224)
    seen: list[torch.Tensor] = []
    for normalize, mean, std in (("imagenet", IMAGENET_MEAN, IMAGENET_STD), ("vit", HALF_MEAN, HALF_STD)):
        model = tiny_loda(normalize=normalize).eval()
        assert (model.mean, model.std) == (mean, std)
        model.cnn.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
        model((pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(seen[1], seen[0], atol=1e-5, rtol=1e-5)  # both: ImageNet-normalised
    with pytest.raises(ValueError, match="normalize"):
        tiny_loda(normalize="clip")


def test_pretrained_weights_from_a_local_file_and_a_clear_error_without_them(tmp_path, monkeypatch):
    source = tiny_loda().vit.state_dict()
    source = {**{k: torch.randn_like(v) for k, v in source.items()}, "head.weight": torch.randn(1000, 32)}
    save_file(source, tmp_path / "vit.safetensors")
    model = tiny_loda(pretrained=str(tmp_path / "vit.safetensors"))
    for key, value in model.vit.state_dict().items():
        assert torch.equal(value, source[key]), key
    assert not any(p.requires_grad for p in model.vit.parameters())

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(PretrainedWeightsError, match="vit_base_patch16_224.augreg2_in21k_ft_in1k.*model.safetensors"):
        tiny_loda(pretrained="augreg2_in21k_ft_in1k")


def test_weights_of_another_configuration_are_rejected():
    other = tiny_loda(latent_dim=8)
    state = {official_key(k): v for k, v in other.state_dict().items()}
    with pytest.raises(WeightsMismatchError, match="of another shape"):
        tiny_loda(weights=state)
    same = tiny_loda(latent_dim=8, weights=state).eval()
    inputs = images(1)
    with torch.no_grad():
        torch.testing.assert_close(same(inputs), other.eval()(inputs), atol=0, rtol=0)


def test_extractor_only_ablation_appends_distortion_tokens():
    """Table 7's "ViT + extractor": no injectors; the projected tokens join the sequence."""
    torch.manual_seed(0)
    model = create_model("loda", size="tiny", vit_depth=2, cnn="resnet10t", latent_dim=16, injection="tokens")
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"extractor", "token_projection", "head"}
    images = torch.randn(2, 3, 224, 224, requires_grad=True)
    scores = model(images)
    scores.sum().backward()
    assert scores.shape == (2,) and model.token_projection.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="model.injection"):
        create_model("loda", size="tiny", vit_depth=1, cnn="resnet10t", injection="concat")


def test_official_recipe_preset_runs(compose_train):
    from iqa.experiment import train

    cfg = compose_train("experiment=loda", "model=loda", "model.size=tiny", "model.vit_depth=1", "model.cnn=resnet10t",
                        "model.latent_dim=16", "data=synthetic", "data.crop_size=224", "data.resize_shorter=224",
                        "data.n_test_crops=1", "data.batch_size=2", "data.eval_batch_size=2", "trainer=cpu",
                        "trainer.precision=32-true", "trainer.fast_dev_run=true")
    assert (cfg.seed, cfg.loss.terms, cfg.optimizer.lr, cfg.data.vflip, cfg.data.repeat) == (3407, {"plcc": 1.0}, 3e-4,
                                                                                              True, 3)
    assert train(cfg)["test/n_images"] > 0
