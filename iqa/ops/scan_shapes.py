"""The layouts of B and C accepted by the selective scan, brought to one grouped form."""

from __future__ import annotations

import torch


def grouped(matrix: torch.Tensor) -> torch.Tensor:
    """B or C as a view (1 | batch, groups, N, 1 | L), channel c using group c // (dim / groups).

    (dim, N) is fixed over time, one group per channel; (batch, N, L) is one group for all
    channels; (batch, G, N, L) is VMamba's G direction groups.
    """
    if matrix.dim() == 2:
        return matrix[None, :, :, None]
    return matrix[:, None] if matrix.dim() == 3 else matrix


def sum_shared(rows: torch.Tensor, grouped_shape: torch.Size) -> torch.Tensor:
    """Gradients per row (batch, dim, N, 1 | L) summed over the rows that share one entry of
    a grouped B or C, giving ``grouped_shape``."""
    batch, dim = rows.shape[:2]
    groups = grouped_shape[1]
    summed = rows.reshape(batch, groups, dim // groups, *rows.shape[2:]).sum(2)
    return summed.sum(0, keepdim=True) if grouped_shape[0] == 1 else summed
