"""The LoDa analysis command on a real (tiny) trained run and real image files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from iqa.analysis.features import block_outputs, main, relative_log_amplitude
from iqa.registry import create_model


def test_plain_path_is_the_frozen_vit_and_profiles_start_at_zero():
    torch.manual_seed(0)
    model = create_model("loda", size="tiny", vit_depth=2, cnn="resnet10t", latent_dim=16).eval()
    images = torch.randn(2, 3, 224, 224)
    plain, attention = block_outputs(model, images, inject=False)
    with torch.no_grad():
        expected = model.vit.blocks(model.vit.norm_pre(model.vit._pos_embed(model.vit.patch_embed(images))))
    torch.testing.assert_close(plain[-1], expected)
    assert attention.shape == (2, 196) and (attention > 0).all() and (attention.sum(-1) < 1).all()  # CLS key left out
    profile = relative_log_amplitude(plain[0], model.vit.num_prefix_tokens)
    assert profile.shape == (8,) and profile[0] == 0


@pytest.mark.parametrize("injection", ["cross_attention", "tokens"])
def test_injected_path_is_what_the_model_scores(injection):
    torch.manual_seed(0)
    model = create_model("loda", size="tiny", vit_depth=2, cnn="resnet10t", latent_dim=16, injection=injection).eval()
    images = torch.randn(2, 3, 224, 224)
    injected, attention = block_outputs(model, images, inject=True)
    with torch.no_grad():
        features = model.vit.forward_head(model.vit.norm(injected[-1]), pre_logits=True)
        torch.testing.assert_close(model.head(features).squeeze(-1), model(images))
    assert [tuple(t.shape) for t in injected] == [(2, 197, 192)] * 2  # ViT tokens only, also with extra tokens
    assert attention.shape == (2, 196)


def test_command_writes_fourier_and_attention_pngs(compose_train, tmp_path):
    from iqa.experiment import train

    cfg = compose_train("model=loda", "model.size=tiny", "model.vit_depth=2", "model.cnn=resnet10t",
                        "model.latent_dim=16", "data.crop_size=224", "data.n_test_crops=1", "trainer.fast_dev_run=true")
    train(cfg)
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (240, 300, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    out = tmp_path / "figures"
    main(["--checkpoint", f"{cfg.paths.output_dir}/checkpoints/last.ckpt", "--images", str(folder), "--out", str(out)])
    written = sorted(p.name for p in out.iterdir())
    assert written == ["attention_a.png", "attention_b.png", "fourier.png"]
    assert all((out / name).stat().st_size > 5000 for name in written)
    with pytest.raises(FileNotFoundError, match="no images found"):
        main(["--checkpoint", f"{cfg.paths.output_dir}/checkpoints/last.ckpt", "--images", str(out.parent / "none"),
              "--out", str(out)])
