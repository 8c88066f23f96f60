"""LoDa (Xu et al., CVPR 2024, "Boosting Image Quality Assessment through Efficient
Transformer Adaptation with Local Feature Enhancement"; official code: NeosXu/LoDa).

A frozen ViT is adapted by injecting local distortion features from a frozen CNN before
every transformer block (Sec. 3, Fig. 2). Only the extractor, the injectors, their scales
and the cosine head train. Differences from the paper's text and the official code's
quirks are listed in docs/loda.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
import torch.nn as nn

from iqa.errors import ConfigurationError
from iqa.models.base import IMAGENET_MEAN, IMAGENET_STD, IQAModel
from iqa.models.methods.loda_blocks import CosineHead, DistortionInjector, LocalDistortionExtractor
from iqa.models.pretrained import VIT_NAMES, load_pretrained, timm_normalization
from iqa.models.weights import KeyDiff, read_state_dict
from iqa.registry import register_model

CNN_STAGES = (1, 2, 3, 4)  # timm feature indices: strides 4, 8, 16, 32

# Our state-dict key → the official one (src/model/loda.py), first match wins.
OFFICIAL_KEY_RULES = (
    (r"^vit\.", ""),
    (r"^cnn\.", "feature_model."),
    (r"^extractor\.branches\.(\d+)\.reduce\.", r"learner.conv.\1.0."),
    (r"^extractor\.branches\.(\d+)\.local\.", r"learner.conv.\1.2."),
    (r"^injectors\.(\d+)\.down\.", r"learner.down_proj.\1."),
    (r"^injectors\.(\d+)\.cross_attn\.", r"learner.cross_attn.\1."),
    (r"^injectors\.(\d+)\.up\.", r"learner.up_proj.\1."),
    (r"^injection_scale$", "learner.scale_factor"),
    (r"^head\.", "learner.head."),
)


def official_key(key: str) -> str:
    """The official code's name for our state-dict ``key``."""
    for pattern, replacement in OFFICIAL_KEY_RULES:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    raise KeyError(f"no official name for {key!r}")


@register_model("loda")
class LoDa(IQAModel):
    """Frozen ViT + frozen CNN + trainable local-distortion injection (Sec. 3).

    Args:
        size: the ViT: ``tiny`` / ``small`` / ``base`` (patch 16, 224²) or any timm ViT name
            (e.g. ``vit_base_patch16_clip_224`` for CLIP weights).
        pretrained: ViT weights: ``None`` (random init), a timm tag of that ViT found in
            the local HF cache (the paper: ``augreg2_in21k_ft_in1k``; also e.g.
            ``augreg_in1k``, ``augreg_in21k``, ``mae``) or a local weights file.
        vit_embed_dim, vit_depth, vit_num_heads: override the ViT's sizes (tiny tests).
        cnn: timm CNN whose stages 1–4 feed the extractor (the paper: ``resnet50``).
        cnn_pretrained: CNN weights, as ``pretrained`` (the official code: timm's default
            ``resnet50`` tag, ``a1_in1k``).
        latent_dim: width r of the distortion tokens and of the injector (eq. 1–4).
        grid_size: each CNN stage is pooled to ``grid_size²`` tokens.
        attention_heads: heads of the injector's cross-attention.
        dropout: dropout on the CLS feature before the head.
        normalize: ``imagenet`` feeds both branches ImageNet-normalised images, as the
            official code does; ``vit`` expects the ViT's own pretraining normalisation
            and re-normalises the CNN's input to the CNN's.
        cnn_bn_train_mode: ``True`` (official) lets the frozen CNN's BatchNorm running
            statistics update in train mode; ``False`` keeps the CNN in eval mode.
        weights: a complete state dict with the official key names (a path or a dict),
            loaded after the pretrained weights.
        injection: ``cross_attention`` (LoDa: an injector before every block, eqs. 2–4) or
            ``tokens`` (Table 7's ablation "ViT + extractor": the distortion tokens, projected to
            the ViT width, join the token sequence before the first block; no injectors).
    """

    def __init__(
        self,
        size: str = "base",
        pretrained: str | None = None,
        vit_embed_dim: int | None = None,
        vit_depth: int | None = None,
        vit_num_heads: int | None = None,
        cnn: str = "resnet50",
        cnn_pretrained: str | None = None,
        latent_dim: int = 64,
        grid_size: int = 7,
        attention_heads: int = 4,
        dropout: float = 0.1,
        normalize: str = "imagenet",
        cnn_bn_train_mode: bool = True,
        weights: str | Path | Mapping[str, torch.Tensor] | None = None,
        injection: str = "cross_attention",
    ) -> None:
        if injection not in ("cross_attention", "tokens"):
            raise ConfigurationError(f"model.injection must be 'cross_attention' or 'tokens', got {injection!r}")
        if normalize not in ("imagenet", "vit"):
            raise ConfigurationError(f"model.normalize must be 'imagenet' or 'vit', got {normalize!r}")
        vit_name = VIT_NAMES.get(size, size)
        if normalize == "imagenet":  # the official code: both branches get ImageNet-normalised images
            mean, std = cnn_mean, cnn_std = IMAGENET_MEAN, IMAGENET_STD
        else:  # each branch gets the normalisation of its own pretraining
            mean, std = timm_normalization(vit_name, pretrained)
            cnn_mean, cnn_std = timm_normalization(cnn, cnn_pretrained)
        sizes = {"embed_dim": vit_embed_dim, "depth": vit_depth, "num_heads": vit_num_heads}
        backbone = timm.create_model(vit_name, num_classes=0, **{k: v for k, v in sizes.items() if v is not None})
        super().__init__(mean, std, fixed_input_size=backbone.patch_embed.img_size[0])
        self.vit = backbone
        self.cnn = timm.create_model(cnn, features_only=True, out_indices=CNN_STAGES)
        if pretrained:
            load_pretrained(self.vit, pretrained, vit_name)
        if cnn_pretrained:
            load_pretrained(self.cnn, cnn_pretrained, cnn)
        self.vit.requires_grad_(False)
        self.cnn.requires_grad_(False)
        self.cnn_bn_train_mode = cnn_bn_train_mode
        # The CNN sees (images · std + mean − cnn_mean) / cnn_std: the identity under "imagenet".
        std_ratio = torch.tensor(std) / torch.tensor(cnn_std)
        mean_shift = (torch.tensor(mean) - torch.tensor(cnn_mean)) / torch.tensor(cnn_std)
        self.register_buffer("cnn_input_scale", std_ratio.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("cnn_input_shift", mean_shift.view(1, 3, 1, 1), persistent=False)

        embed_dim = self.vit.embed_dim
        self.extractor = LocalDistortionExtractor(self.cnn.feature_info.channels(), latent_dim, grid_size)
        self.injection = injection
        if injection == "cross_attention":
            self.injectors = nn.ModuleList(
                DistortionInjector(embed_dim, latent_dim, attention_heads) for _ in self.vit.blocks
            )
            self.injection_scale = nn.Parameter(nn.init.trunc_normal_(torch.empty(len(self.vit.blocks), embed_dim),
                                                                      std=0.02))
        else:
            self.token_projection = nn.Linear(latent_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = CosineHead(self.vit.num_features)
        if weights is not None:
            state = weights if isinstance(weights, Mapping) else read_state_dict(weights)
            self.load_official_state_dict(state)

    def frozen_parts(self) -> list[nn.Module]:
        return [] if self.cnn_bn_train_mode else [self.cnn]

    def load_official_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a complete state dict that uses the official key names (strict)."""
        own = self.state_dict()
        ours = {official_key(key): key for key in own}
        KeyDiff.of(state, {official: own[key] for official, key in ours.items()}).check(
            "model.weights", "this LoDa configuration", "check the size/cnn/vit_* arguments")
        self.load_state_dict({ours[k]: v for k, v in state.items()})

    def block_outputs(self, images: torch.Tensor, inject: bool = True) -> list[torch.Tensor]:
        """The ViT tokens ``(B, T, C)`` after each block; ``inject=False`` runs the plain frozen ViT
        (Figs. 6 and 7 compare the two, :mod:`iqa.analysis.features`)."""
        vit = self.vit
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
        n_vit_tokens = x.shape[1]
        if inject:
            distortion_tokens = self.extractor(self.cnn(images * self.cnn_input_scale + self.cnn_input_shift))
            if self.injection == "tokens":  # Table 7: the extractor's tokens join the ViT's sequence
                x = torch.cat([x, self.token_projection(distortion_tokens)], dim=1)
        outputs = []
        for index, block in enumerate(vit.blocks):
            if inject and self.injection == "cross_attention":  # eq. 4, CLS token included
                x = x + self.injectors[index](x, distortion_tokens) * self.injection_scale[index]
            x = block(x)
            outputs.append(x[:, :n_vit_tokens])
        return outputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        tokens = self.block_outputs(images)[-1]
        features = vit.forward_head(vit.norm(tokens), pre_logits=True)  # the CLS token for timm's ViTs
        return self.head(self.dropout(features)).squeeze(-1)
