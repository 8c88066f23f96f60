"""The ``LightningDataModule``: benchmarks × protocol → train / val / test loaders.

One dataset trains and tests on its own split; several datasets (``data=mix_*``) train
on the union of their training parts and validate/test per dataset (universal IQA);
``test_on`` adds datasets tested in full (cross-dataset evaluation).
Validation and test have one loader per dataset, so metrics are per dataset.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from iqa.data.dataset import IQAImageDataset, collate_skipping_corrupt
from iqa.data.datasets import DatasetDescription, DatasetError, build_description
from iqa.data.image_check import check_images, default_cache_dir
from iqa.data.image_io import DEFAULT_MAX_PIXELS, ImageCache
from iqa.data.protocol import SplitProtocol
from iqa.data.records import ImageRecord
from iqa.data.sampling import EpochSampler, SeededTrainingSet
from iqa.data.transforms import MultiCrop
from iqa.errors import ConfigurationError

log = logging.getLogger(__name__)


class IQADataModule(L.LightningDataModule):
    """Loads, splits and batches the benchmarks of one experiment.

    Args:
        datasets: names of the training benchmarks (``kadid``, ``koniq``, …).
        data_dir: root under which each benchmark has its default folder.
        roots: dataset name → its folder, overriding ``data_dir`` (``None``: the default); every
            name must be one of ``datasets`` or ``test_on``.
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
        cache_dir: optional folder for decoded/resized images (and, under ``image_checks/``,
            for the image check; default ``~/.cache/iqa/image_checks``).
        on_corrupt: every listed image of every split is checked before training
            (:mod:`iqa.data.image_check`): ``"fail"`` reports all unusable ones at once,
            ``"skip"`` leaves them out with one warning (and skips ones that fail later).
        max_pixels: images with more pixels are unusable (decompression-bomb guard;
            default Pillow's ``Image.MAX_IMAGE_PIXELS``; ``None``: no limit).
        seed: seeds the training order and crops, a function of (seed, epoch, sample)
            only (:mod:`iqa.data.sampling`), so resumed runs repeat uninterrupted ones.
    """

    def __init__(
        self,
        datasets: list[str],
        data_dir: str,
        protocol: SplitProtocol,
        roots: dict[str, str | None] | None = None,
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
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_int("batch_size", batch_size, "a positive number of images per training batch")
        _check_int("eval_batch_size", eval_batch_size,
                   "a positive number of images per validation/test batch, or null for data.batch_size", null=True)
        _check_int("num_workers", num_workers,
                   "-1 (one per CPU core), 0 (decode in the main process) or a positive number of processes", -1)
        _check_int("crop_size", crop_size, "a positive crop side in pixels, or null for whole images", null=True)
        _check_int("n_train_crops", n_train_crops, "a positive number of crops per training image")
        _check_int("n_test_crops", n_test_crops, "a positive number of crops per test image")
        _check_int("repeat", repeat, "a positive number of visits per training image and epoch")
        _check_int("max_pixels", max_pixels, "a positive number of pixels, or null for no limit", null=True)
        if on_corrupt not in ("fail", "skip"):
            raise DatasetError(f"data.on_corrupt must be fail or skip; got {on_corrupt!r}")
        if not datasets and not test_on:
            raise DatasetError("data.datasets is empty; name at least one benchmark")
        used = [*datasets, *(test_on or [])]
        roots = {name: folder for name, folder in (roots or {}).items() if folder is not None}
        for name in roots:
            if name not in used:
                raise ConfigurationError(f"data.roots.{name}={roots[name]}: this run does not use {name}; it uses "
                                         f"{', '.join(used)} (data.datasets and data.test_on); see docs/datasets.md")
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
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.num_workers = (os.cpu_count() or 1) if num_workers < 0 else num_workers
        self.cache = ImageCache(cache_dir) if cache_dir else None
        self.on_corrupt = on_corrupt
        self.max_pixels = max_pixels
        self.check_dir = Path(cache_dir).expanduser() / "image_checks" if cache_dir else default_cache_dir()
        self.unusable: set[Path] = set()  # listed images left out (data.on_corrupt=skip)
        self.seed = seed
        self.resume_data_epoch = 0  # set from the checkpoint when a run resumes
        self.train_set: SeededTrainingSet | None = None
        self.val_sets: dict[str, IQAImageDataset] = {}
        self.test_sets: dict[str, IQAImageDataset] = {}
        self.listed: dict[str, list[ImageRecord]] = {}  # every record of each benchmark; batches carry indices

    @staticmethod
    def _describe(name: str, data_dir: str, roots: dict, meta_files: dict) -> DatasetDescription:
        description = build_description(name, data_dir, roots.get(name))
        if name in meta_files:
            description = type(description)(description.root, meta_file=meta_files[name])
        return description

    def check_folders(self) -> None:
        """Raise :class:`DatasetError` now, before a model is built, when a dataset folder is
        missing or empty."""
        for description in self.train_descriptions + self.test_only_descriptions:
            description.check_root()

    # -- setup --------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None or self.test_sets:
            return
        listed = {d.name: d.records() for d in self.train_descriptions + self.test_only_descriptions}
        self.unusable = self._check_images(listed)
        self.listed = listed
        train_parts = []
        for description in self.train_descriptions:
            records = listed[description.name]
            split = self.protocol.split(records)
            train_parts.append(self._dataset(description, records, split.train, self.train_crops))
            if split.val:
                self.val_sets[description.name] = self._dataset(description, records, split.val, self.test_crops)
            if split.test:
                self.test_sets[description.name] = self._dataset(description, records, split.test, self.test_crops)
            log.info("%s: %d train / %d val / %d test images", description.name,
                     len(split.train), len(split.val), len(split.test))
        for description in self.test_only_descriptions:
            records = listed[description.name]
            self.test_sets[description.name] = self._dataset(
                description, records, list(range(len(records))), self.test_crops)
        self.train_set = SeededTrainingSet(train_parts, self.seed, self.repeat) if train_parts else None

    def _check_images(self, listed: dict[str, list[ImageRecord]]) -> set[Path]:
        """Check every listed image before training: raise naming the unusable ones, or
        (``data.on_corrupt=skip``) return them, logged in one warning."""
        paths = list(dict.fromkeys(record.path for records in listed.values() for record in records))
        problems = check_images(paths, self.max_pixels, self.check_dir)
        if not problems:
            return set()
        lines = [f"  {path}: {reason}" for path, reason in problems.items()]
        if self.on_corrupt == "skip":
            log.warning("data.on_corrupt=skip: leaving out %d of %d listed images that cannot be used:\n%s",
                        len(problems), len(paths), "\n".join(lines))
            return set(problems)
        more = f"\n  ... and {len(lines) - 5} more" if len(lines) > 5 else ""
        raise DatasetError(
            f"{len(problems)} of {len(paths)} listed images cannot be used:\n" + "\n".join(lines[:5]) + more
            + "\nremove or replace them (or their rows in the label file), "
            "or set data.on_corrupt=skip to leave them out with a warning"
        )

    def _dataset(self, description, records, indices, crops) -> IQAImageDataset:
        indices = [i for i in indices if records[i].path not in self.unusable]
        return IQAImageDataset(
            description,
            [records[i] for i in indices],
            ids=list(indices),
            crops=crops,
            resize_shorter=self.resize_shorter,
            cache=self.cache,
            on_corrupt=self.on_corrupt,
            max_pixels=self.max_pixels,
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

    def record(self, name: str, image_id: int) -> ImageRecord:
        """The labelled image (path, MOS, distortion) behind the ``image_id`` that batches of
        benchmark ``name`` carry, in every split (available after :meth:`setup`)."""
        return self.listed[name][image_id]

    # -- loaders ------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, sampler: EpochSampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=sampler is not None and len(sampler) > batch_size,
            generator=torch.Generator().manual_seed(self.seed),  # iterators never draw from the global RNG
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_skipping_corrupt,
        )

    def train_dataloader(self) -> DataLoader:
        world_size, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = EpochSampler(self.train_set, self.seed, num_replicas=world_size, rank=rank)
        sampler.set_epoch(self.resume_data_epoch)  # Lightning sets later epochs itself
        return self._loader(self.train_set, self.batch_size, sampler)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, self.eval_batch_size) for d in self.val_sets.values()]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, self.eval_batch_size) for d in self.test_sets.values()]


def _check_int(key: str, value, allowed: str, minimum: int = 1, null: bool = False) -> None:
    """Raise naming ``data.<key>`` unless ``value`` is an integer >= ``minimum`` (or ``None`` if ``null``)."""
    if value is None and null:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DatasetError(f"data.{key} must be {allowed}; got {value!r}")
