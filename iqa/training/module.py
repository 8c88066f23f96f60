"""The one ``LightningModule`` of every method: images → one score per crop → per image."""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _NormBase

from iqa.metrics import IQAMetrics
from iqa.models.base import ConfigurationError
from iqa.models.pipeline import ScoringPipeline
from iqa.models.weights import KeyDiff
from iqa.training.losses import WeightedLoss
from iqa.training.optim import OptimizerSpec, SchedulerSpec

log = logging.getLogger(__name__)


class IQAModule(L.LightningModule):
    """Trains and evaluates a :class:`~iqa.models.pipeline.ScoringPipeline`.

    Batches hold ``images`` (B, K, 3, h, w) uint8 — K crops of each image. Training
    treats every crop as a sample with its image's label; evaluation averages the K
    crop scores per image, maps them back to the dataset's MOS scale and updates one
    :class:`~iqa.metrics.IQAMetrics` per dataset (one loader per dataset).

    Checkpoints hold only trainable parameters and normalisation running statistics (a
    prompt on a frozen 7B model stays small); the frozen parts are rebuilt from the config.
    """

    def __init__(
        self,
        net: ScoringPipeline,
        loss: WeightedLoss | None = None,
        optimizer: OptimizerSpec | None = None,
        scheduler: SchedulerSpec | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.optimizer_spec = optimizer
        self.scheduler_spec = scheduler
        self.val_metrics = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()
        self.to_mos: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}  # benchmark → label-to-MOS map
        self.run_config: dict | None = None
        self.test_results: dict[str, float] = {}
        self.test_scores: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # ids, predictions, MOS
        self._counts_logged = False

    # -- parameters -----------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        """Total and trainable parameter counts of the scoring pipeline."""
        return {
            "params/total": sum(p.numel() for p in self.net.parameters()),
            "params/trainable": sum(p.numel() for p in self.trainable_parameters()),
        }

    # -- forward --------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) uint8 or [0, 1] float → (N,) scores."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255)
        return self.net(images)

    def _crop_scores(self, batch: dict) -> torch.Tensor:
        images = batch["images"]
        n_images, n_crops = images.shape[:2]
        return self(images.flatten(0, 1)).float().view(n_images, n_crops)

    # -- training -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        self.val_metrics = nn.ModuleDict({name: IQAMetrics() for name in datamodule.val_names})
        self.test_metrics = nn.ModuleDict({name: IQAMetrics() for name in datamodule.test_names})
        self.to_mos = {name: datamodule.description(name).denormalize
                       for name in [*datamodule.val_names, *datamodule.test_names]}
        if not self._counts_logged:
            self._counts_logged = True
            counts = self.parameter_counts()
            log.info("parameters: %s", ", ".join(f"{key.split('/')[1]} {value:,}" for key, value in counts.items()))

    def on_fit_start(self) -> None:
        for logger in self.loggers:
            logger.log_hyperparams(self.parameter_counts())

    def training_step(self, batch: dict | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every image of the batch was corrupt and skipped
            return None
        scores = self._crop_scores(batch)
        labels = batch["label"].float()[:, None].expand_as(scores)
        parts = self.loss(scores.flatten(), labels.flatten())
        loss = parts.pop("loss")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(scores))
        if len(parts) > 1:  # the terms of a weighted sum; a single term equals the loss
            self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=len(scores))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True, batch_size=len(scores))
        return loss

    def configure_optimizers(self):
        parameters = self.trainable_parameters()
        if not parameters:
            raise ConfigurationError(
                f"nothing to train: model={type(self.net.model).__name__} is frozen and no prompt is set; "
                "choose prompt=padding|patch|overlay (or another trainable option)")
        optimizer = self.optimizer_spec.build(parameters)
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total_steps // max(1, self.trainer.max_epochs or 1))
        scheduler = self.scheduler_spec.build(optimizer, steps_per_epoch, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- evaluation -----------------------------------------------------------------------
    def _update(self, metrics: nn.ModuleDict, batch: dict | None, dataloader_idx: int) -> None:
        """Scores of one evaluation batch, in the MOS units of its benchmark (loader
        ``dataloader_idx`` is the benchmark at that position of ``metrics``)."""
        if batch is None:
            return
        name = list(metrics)[dataloader_idx]
        predicted_mos = self.to_mos[name](self._crop_scores(batch).mean(dim=1))
        metrics[name].update(predicted_mos, batch["mos"], batch["image_id"])

    def validation_step(self, batch: dict | None, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update(self.val_metrics, batch, dataloader_idx)

    def test_step(self, batch: dict | None, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update(self.test_metrics, batch, dataloader_idx)

    def _summarise(self, stage: str, metrics: nn.ModuleDict) -> dict[str, float]:
        """Per-dataset values under ``stage/<name>/<metric>`` when there are several
        datasets (plus their mean under ``stage/mean/<metric>``), else ``stage/<metric>``."""
        results: dict[str, float] = {}
        per_dataset = {name: metric.compute() for name, metric in metrics.items()}
        for name, values in per_dataset.items():
            prefix = f"{stage}/{name}" if len(per_dataset) > 1 else stage
            results.update({f"{prefix}/{key}": float(value) for key, value in values.items()})
        if len(per_dataset) > 1:
            for key in ("srcc", "plcc", "krcc"):
                results[f"{stage}/mean/{key}"] = float(torch.tensor([v[key] for v in per_dataset.values()]).mean())
        return results

    def on_validation_epoch_end(self) -> None:
        if not self.val_metrics:
            return
        results = self._summarise("val", self.val_metrics)
        if len(self.val_metrics) > 1:  # the monitored keys have one name in every run
            results["val/srcc"], results["val/plcc"] = results["val/mean/srcc"], results["val/mean/plcc"]
        results["val/srcc_plcc"] = (results["val/srcc"] + results["val/plcc"]) / 2  # the VP paper's selection
        shown = {key: results.pop(key) for key in ("val/srcc", "val/plcc")}
        self.log_dict(results)
        self.log_dict(shown, prog_bar=True)
        for metric in self.val_metrics.values():
            metric.reset()

    def on_test_epoch_end(self) -> None:
        self.test_results = self._summarise("test", self.test_metrics)
        self.test_scores = {name: metric.scores(with_ids=True) for name, metric in self.test_metrics.items()}
        self.log_dict(self.test_results)
        for metric in self.test_metrics.values():
            metric.reset()

    # -- checkpoints: trainable tensors + running statistics + the resolved config ------------
    def _stored_keys(self) -> set[str]:
        """Trainable parameters and the buffers training changes (normalisation running
        statistics, also of frozen modules kept in train mode); everything else is rebuilt
        from the config and the pretrained weights."""
        trainable = {f"net.{n}" for n, p in self.net.named_parameters() if p.requires_grad}
        running = {f"net.{owner}.{n}" if owner else f"net.{n}"
                   for owner, module in self.net.named_modules() if isinstance(module, _NormBase)
                   for n, _ in module.named_buffers(recurse=False)}
        return trainable | running

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        full = super().state_dict(*args, **kwargs)
        keep = self._stored_keys()
        prefix = kwargs.get("prefix", "")
        return type(full)((k, v) for k, v in full.items() if k[len(prefix):] in keep)

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True, assign: bool = False):
        own = super().state_dict()
        if strict:  # frozen tensors are rebuilt from the config: only the stored ones must be there
            KeyDiff.of(state_dict, own, may_miss=set(own) - self._stored_keys()).check(
                "the checkpoint", "the configured model (is it from another model= or prompt=?)",
                "evaluate it with the config it was trained with")
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["iqa_config"] = self.run_config
