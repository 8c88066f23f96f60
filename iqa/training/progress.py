"""The console progress bar: Lightning's rich bar showing what a researcher watches."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class ConsoleProgressBar(RichProgressBar):
    """Rich progress bar with ``train/loss``, ``train/lr``, ``val/srcc`` and ``val/plcc``
    (what the module logs with ``prog_bar=True``), without Lightning's logger version
    ``v_num``, which names no folder of ours."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        if isinstance(metrics.get("train/lr"), float):  # the bar's 3 decimals would show 0.000
            metrics["train/lr"] = f"{metrics['train/lr']:.1e}"
        return metrics
