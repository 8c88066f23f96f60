"""PEFT baselines on a frozen ViT (LoDa Table 6): parameter counts, identity at initialisation,
what trains, and real training runs that save only the tuner and the head."""

from __future__ import annotations

import pytest
import torch

from iqa.registry import create_model

WIDTH, DEPTH = 192, 12  # ViT-T
HEAD = WIDTH + 1
EXPECTED_TRAINABLE = {  # formulas at ViT-T with the config defaults
    "linear_probe": HEAD,
    "adapter": DEPTH * (WIDTH * 64 + 64 + 64 * WIDTH + WIDTH) + HEAD,  # down + up, with biases
    "lora": DEPTH * (8 * WIDTH + 3 * WIDTH * 8) + HEAD,  # A (r × d) and B (3d × r) on qkv
    "vpt": DEPTH * 10 * WIDTH + HEAD,  # 10 tokens per block
}


def vit(tuning: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("vit", size="tiny", img_size=32, tuning=tuning)


@pytest.mark.parametrize("tuning", sorted(EXPECTED_TRAINABLE))
def test_trainable_parameter_counts(tuning):
    model = vit(tuning)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == EXPECTED_TRAINABLE[tuning]


@pytest.mark.parametrize("tuning", ["adapter", "lora"])
def test_tuned_model_equals_the_frozen_model_at_initialisation(tuning):
    tuned, plain = vit(tuning).eval(), vit("full").eval()
    frozen = {k.replace(".base_layer", "").replace(".mlp.mlp.", ".mlp."): v for k, v in tuned.state_dict().items()
              if "lora_" not in k and ".mlp.down." not in k and ".mlp.up." not in k}
    plain.load_state_dict(frozen, strict=True)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(tuned(images), plain(images), rtol=0, atol=1e-6)


@pytest.mark.parametrize("tuning", ["adapter", "lora", "vpt"])
def test_only_the_tuner_and_head_receive_gradients(tuning):
    model = vit(tuning).train()
    assert not model.backbone.training
    for _ in range(3):  # zero-initialised head, then up/B matrices: the head moves at step 1, up/B from
        # step 2, the rest from step 3
        model.zero_grad()
        model(torch.randn(2, 3, 32, 32)).sum().backward()
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter -= 0.1 * parameter.grad
    for name, parameter in model.named_parameters():
        assert (parameter.grad is not None and parameter.grad.abs().sum() > 0) == parameter.requires_grad, name


def test_unknown_tuning_names_the_options():
    with pytest.raises(ValueError, match="model.tuning='prefix': ViTIQA offers full, linear_probe, adapter, lora, vpt"):
        create_model("vit", size="tiny", tuning="prefix")
    with pytest.raises(ValueError, match="ResNetIQA offers full, linear_probe"):
        create_model("resnet18", tuning="lora")


@pytest.mark.parametrize("tuning", ["adapter", "lora", "vpt"])
def test_training_saves_only_tuner_and_head(compose_train, tuning):
    from iqa.checkpoint import load_module, read_checkpoint
    from iqa.experiment import train

    cfg = compose_train("model=vit", "model.size=tiny", "model.img_size=32", f"model.tuning={tuning}",
                        "data.crop_size=32", "trainer.max_epochs=1")
    train(cfg)
    path = f"{cfg.paths.output_dir}/checkpoints/last.ckpt"
    saved = read_checkpoint(path)["state_dict"]
    assert sum(v.numel() for v in saved.values()) == EXPECTED_TRAINABLE[tuning]
    module, _ = load_module(path)  # rebuilt from the config, tuner tensors restored
    for key, value in saved.items():
        torch.testing.assert_close(module.state_dict()[key], value)
