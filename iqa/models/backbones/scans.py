"""How SS2D reads a 2D map as K = 4 sequences and merges them back: VMamba's cross scan (Sec. 3.2,
Fig. 2) and LQMamba's local window scan (QMamba paper Sec. 3.1.2, after LocalMamba's windowed
scan and its per-direction channel gate). ``unfold``/``fold`` materialise the sequences (any
device); ``paths`` gives the fused CPU kernel the pixel each direction reads at each step.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from iqa.models.backbones.layers2d import LayerNorm2d

try:
    from iqa.ops.local_gate_numba import gated_merge_numba
except ImportError:  # numba is optional: SS2D then folds with :meth:`LocalScan.fold`
    gated_merge_numba = None


class CrossScan(nn.Module):
    """VMamba's cross scan (Sec. 3.2, Fig. 2): row-major, column-major, and both reversed."""

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W)`` → ``(B, K, D, L)``."""
        rows, cols = x.flatten(2), x.transpose(2, 3).flatten(2)
        return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)

    def length(self, height: int, width: int) -> int:
        return height * width

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def paths(self, height: int, width: int) -> torch.Tensor:
        """``(K, L)`` int32: the pixel (row-major index) direction k reads at step t, for the
        fused scan that reads the map in place; :meth:`unfold` applied to the pixel indices."""
        return self.unfold(torch.arange(height * width, dtype=torch.int32).view(1, 1, height, width))[0, :, 0]

    def fold(self, ys: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``(B, K, D, L)`` → the sum of the K outputs at their pixels, ``(B, D, H, W)``."""
        rows = ys[:, 0] + ys[:, 2].flip(-1)
        cols = ys[:, 1] + ys[:, 3].flip(-1)
        batch, dim = rows.shape[:2]
        cols = cols.view(batch, dim, width, height).transpose(2, 3)
        return rows.view(batch, dim, height, width) + cols


class ChannelGate(nn.Module):
    """LocalMamba's per-direction channel attention (``BiAttn``, Sec. 3.3 there): a squeeze-
    excitation gate ``x · σ(W₂ GELU(W₁ mean_{HW} LN(x)))``, reduction 1/8, shared by the K
    directions of one block."""

    def __init__(self, dim: int, ratio: float = 0.125) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = LayerNorm2d(dim)
        self.global_reduce = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.channel_select = nn.Linear(hidden, dim)

    def _select(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.channel_select(self.act(self.global_reduce(pooled))))

    def select_normalized(self, pooled: torch.Tensor) -> torch.Tensor:
        """The gate from mean_{HW} of the LayerNorm before its affine map, ``(..., C)`` → ``(..., C)``
        (the fused CPU path's :meth:`LocalScan.fold_pixels` computes those means)."""
        return self._select(pooled * self.norm.weight + self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """As LocalMamba computes it (the LayerNorm written out; what ``VSSM.flops`` counts)."""
        return x * self._select(self.norm(x).mean(dim=(2, 3)))[:, :, None, None]


class LocalScan(nn.Module):
    """Window scan of LQMamba (QMamba paper Sec. 3.1.2, after LocalMamba's local scan).

    The (zero-padded) map is cut into ``window × window`` windows. Direction 0 reads each
    window row by row and the windows row by row; direction 1 is its vertical counterpart
    (columns inside each window, windows column by column); 2 and 3 are both reversed. Each
    direction's output is gated by a :class:`ChannelGate` before the directions are summed.
    """

    def __init__(self, dim: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.attn = ChannelGate(dim)

    def _grid(self, height: int, width: int) -> tuple[int, int]:
        return math.ceil(height / self.window), math.ceil(width / self.window)

    def length(self, height: int, width: int) -> int:
        rows_of_windows, cols_of_windows = self._grid(height, width)
        return rows_of_windows * cols_of_windows * self.window**2

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        rows_of_windows, cols_of_windows = self._grid(height, width)
        return rows_of_windows * self.window, cols_of_windows * self.window

    def paths(self, height: int, width: int) -> torch.Tensor:
        """``(K, L)`` int32 pixel indices of the padded map in each direction's order (:meth:`unfold`)."""
        padded = self.padded_size(height, width)
        return self.unfold(torch.arange(padded[0] * padded[1], dtype=torch.int32).view(1, 1, *padded))[0, :, 0]

    def fold_pixels(self, ys: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """:meth:`fold` for outputs already in pixel order, pixel-major: ``(B, K, H', W', D)`` on the
        padded map → cropped, gated per direction and summed, ``(B, D, H, W)`` (one fused CPU op,
        :mod:`iqa.ops.local_gate_numba`)."""
        return gated_merge_numba(ys, height, width, self.attn.norm.eps, self.attn.select_normalized,
                                 list(self.attn.parameters()))

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        batch, dim, height, width = x.shape
        w = self.window
        rows_of_windows, cols_of_windows = self._grid(height, width)
        x = F.pad(x, (0, cols_of_windows * w - width, 0, rows_of_windows * w - height))
        windows = x.view(batch, dim, rows_of_windows, w, cols_of_windows, w)
        rows = windows.permute(0, 1, 2, 4, 3, 5).flatten(2)  # window row, window col, row, col
        cols = windows.permute(0, 1, 4, 2, 5, 3).flatten(2)  # window col, window row, col, row
        return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)

    def fold(self, ys: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, dim, _ = ys.shape
        w = self.window
        rows_of_windows, cols_of_windows = self._grid(height, width)
        padded = (batch, dim, rows_of_windows * w, cols_of_windows * w)
        rows = (ys[:, 0], ys[:, 2].flip(-1))
        cols = (ys[:, 1], ys[:, 3].flip(-1))
        maps = [y.view(batch, dim, rows_of_windows, cols_of_windows, w, w).permute(0, 1, 2, 4, 3, 5).reshape(padded)
                for y in rows]
        maps += [y.view(batch, dim, cols_of_windows, rows_of_windows, w, w).permute(0, 1, 3, 5, 2, 4).reshape(padded)
                 for y in cols]
        return sum(self.attn(y[:, :, :height, :width]) for y in maps)
