"""The ``LightningDataModule``: benchmarks × protocol → train / val / test loaders.

One dataset trains and tests on its own split; several datasets (``data=mix_*``) train
on the union of their training parts and validate/test per dataset (universal IQA);
``test_on`` adds datasets tested in full (cross-dataset evaluation).
Validation and test have one loader per dataset, so metrics are per dataset.
"""

from __future__ import annotations

import logging
import os
import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader

from iqa.data.dataset import IQAImageDataset, collate_skipping_corrupt
from iqa.data.datasets import DatasetDescription, DatasetError, build_description
from iqa.data.image_io import ImageCache
from iqa.data.protocol import SplitProtocol
from iqa.data.transforms import MultiCrop

log = logging.getLogger(__name__)


class IQADataModule(L.LightningDataModule):
    """Loads, splits and batches the benchmarks of one experiment.

    Args:
        datasets: names of the training benchmarks (``kadid``, ``koniq``, …).
        data_dir: root under which each benchmark has its default folder.
        root: folder of the (single) training benchmark, overriding ``data_dir``.
        roots: per-name folder overrides (for mixes).
        meta_files: per-name pyiqa-style meta CSVs replacing the official label files.
        test_on: names of benchmarks tested in full (cross-dataset).
        protocol: how each training benchmark is split.
        crop_size, n_train_crops, n_test_crops, train_crop_mode, test_crop_mode, hflip, vflip: crops
            (see :class:`~iqa.data.transforms.MultiCrop`).
        resize_shorter: resize the shorter side before cropping.
        repeat: times each training image is visited per epoch, each time with new
            random crops (LoDa's "several crops per image per epoch").
        batch_size: images per training batch (each with ``n_train_crops`` crops).
        eval_batch_size: images per validation/test batch (each with ``n_test_crops``).
        num_workers: decoding processes (``-1``: one per CPU core).
        cache_dir: optional folder for decoded/resized images.
        on_corrupt: ``"fail"`` or ``"skip"`` undecodable images.
    """

    def __init__(
        self,
        datasets: list[str],
        data_dir: str,
        protocol: SplitProtocol,
        root: str | None = None,
        roots: dict[str, str] | None = None,
        meta_files: dict[str, str] | None = None,
        test_on: list[str] | None = None,
        crop_size: int | None = 224,
        n_train_crops: int = 1,
        n_test_crops: int = 10,
        train_crop_mode: str = "random",
        test_crop_mode: str = "random",
        hflip: bool = True,
        vflip: bool = False,
        resize_shorter: int | None = None,
        repeat: int = 1,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = -1,
        cache_dir: str | None = None,
        on_corrupt: str = "fail",
    ) -> None:
        super().__init__()
        if not datasets and not test_on:
            raise DatasetError("data.datasets is empty; name at least one benchmark")
        if root is not None and len(datasets) > 1:
            raise DatasetError(f"data.root is for a single dataset; use data.roots.<name> for {list(datasets)}")
        roots = dict(roots or {})
        if root is not None:
            roots[(list(datasets) or list(test_on))[0]] = root
        meta_files = dict(meta_files or {})
        self.train_descriptions = [self._describe(n, data_dir, roots, meta_files) for n in datasets]
        self.test_only_descriptions = [self._describe(n, data_dir, roots, meta_files) for n in (test_on or [])]
        self.protocol = protocol
        self.train_crops = MultiCrop(crop_size, n_train_crops, train=True, hflip=hflip, vflip=vflip,
                                     mode=train_crop_mode)
        self.test_crops = MultiCrop(crop_size, n_test_crops, train=False, mode=test_crop_mode)
        self.resize_shorter = resize_shorter
        self.repeat = repeat
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = (os.cpu_count() or 1) if num_workers < 0 else num_workers
        self.cache = ImageCache(cache_dir) if cache_dir else None
        self.on_corrupt = on_corrupt
        self.train_set: ConcatDataset | None = None
        self.val_sets: dict[str, IQAImageDataset] = {}
        self.test_sets: dict[str, IQAImageDataset] = {}

    @staticmethod
    def _describe(name: str, data_dir: str, roots: dict, meta_files: dict) -> DatasetDescription:
        description = build_description(name, data_dir, roots.get(name))
        if name in meta_files:
            description = type(description)(description.root, meta_file=meta_files[name])
        return description

    # -- setup --------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None or self.test_sets:
            return
        train_parts = []
        for description in self.train_descriptions:
            records = description.records()
            split = self.protocol.split(records)
            train_parts.append(self._dataset(description, records, split.train, self.train_crops))
            if split.val:
                self.val_sets[description.name] = self._dataset(description, records, split.val, self.test_crops)
            if split.test:
                self.test_sets[description.name] = self._dataset(description, records, split.test, self.test_crops)
            log.info("%s: %d train / %d val / %d test images", description.name,
                     len(split.train), len(split.val), len(split.test))
        for description in self.test_only_descriptions:
            records = description.records()
            self.test_sets[description.name] = self._dataset(
                description, records, list(range(len(records))), self.test_crops)
        self.train_set = ConcatDataset(train_parts * self.repeat) if train_parts else None

    def _dataset(self, description, records, indices, crops) -> IQAImageDataset:
        return IQAImageDataset(
            description,
            [records[i] for i in indices],
            ids=list(indices),
            crops=crops,
            resize_shorter=self.resize_shorter,
            cache=self.cache,
            on_corrupt=self.on_corrupt,
        )

    @property
    def val_names(self) -> list[str]:
        """Dataset names of the validation loaders, in loader order."""
        return list(self.val_sets)

    @property
    def test_names(self) -> list[str]:
        """Dataset names of the test loaders, in loader order."""
        return list(self.test_sets)

    def description(self, name: str) -> DatasetDescription:
        """The description of a training or test benchmark."""
        for description in self.train_descriptions + self.test_only_descriptions:
            if description.name == name:
                return description
        raise KeyError(name)

    # -- loaders ------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) > batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_skipping_corrupt,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, self.eval_batch_size, shuffle=False) for d in self.val_sets.values()]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, self.eval_batch_size, shuffle=False) for d in self.test_sets.values()]
