"""Training randomness as a pure function of (seed, epoch, sample index).

The order of the training images in an epoch depends only on (seed, epoch), and the
random crops and flips of one sample only on (seed, epoch, index): not on which
DataLoader worker decodes it, how many workers there are, or where an interrupted run
was resumed. A killed run resumed from its end-of-epoch checkpoint therefore sees the
same batches as the uninterrupted run.

The sampler yields ``(epoch, index)`` pairs; :class:`SeededTrainingSet` turns each pair
into a ``torch.Generator`` for that sample and passes it down to the crop sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


class SupportsSeededItems(Protocol):
    def __len__(self) -> int: ...

    def item(self, index: int, generator: torch.Generator | None) -> dict | None: ...


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator whose stream depends only on (seed, epoch, index)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class SeededTrainingSet(Dataset):
    """The training parts of an experiment (each visited ``repeat`` times per epoch),
    indexed by ``(epoch, index)`` pairs from :class:`EpochSampler`."""

    def __init__(self, parts: Sequence[SupportsSeededItems], seed: int, repeat: int = 1) -> None:
        self.parts = list(parts) * repeat
        self.seed = seed
        self.offsets = np.cumsum([0] + [len(part) for part in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: tuple[int, int]) -> dict | None:
        epoch, index = key
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part].item(index - int(self.offsets[part]), sample_generator(self.seed, epoch, index))


class EpochSampler(DistributedSampler):
    """Shuffled order seeded by (seed, epoch), split across ranks, yielding ``(epoch, index)``.

    A ``DistributedSampler`` (also with one process), so Lightning keeps it under DDP
    instead of substituting its own, and calls :meth:`set_epoch` at every epoch start.
    """

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        return ((epoch, index) for index in super().__iter__())
