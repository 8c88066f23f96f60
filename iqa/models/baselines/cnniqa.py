"""CNNIQA (Kang et al., CVPR 2014, "Convolutional Neural Networks for No-Reference Image
Quality Assessment"): one convolution layer, max + min pooling, two fully connected
layers. Small enough to train from scratch on a CPU in minutes — the quickstart model.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from iqa.models.base import HALF_MEAN, HALF_STD, IQAModel
from iqa.registry import register_model


@register_model("cnniqa")
class CNNIQA(IQAModel):
    """Conv(7×7, ``n_kernels``) → global max & min pooling (§3.2) → FC → FC → score.

    Args:
        n_kernels: convolution kernels (50 in the paper).
        hidden: width of the two fully connected layers (800 in the paper).
        dropout: dropout between the fully connected layers.
    """

    def __init__(self, n_kernels: int = 50, hidden: int = 800, dropout: float = 0.5) -> None:
        super().__init__(HALF_MEAN, HALF_STD, fixed_input_size=None)
        self.conv = nn.Conv2d(3, n_kernels, kernel_size=7)
        self.regressor = nn.Sequential(
            nn.Linear(2 * n_kernels, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )
        self.head = None  # no separate regression head: the regressor is most of the model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.conv(images).flatten(2)
        pooled = torch.cat([features.amax(dim=2), features.amin(dim=2)], dim=1)
        return self.regressor(pooled).squeeze(-1)
