"""Train and test one experiment: ``python train.py model=... data=... [-m sweeps]``."""

import math

import hydra
from omegaconf import DictConfig

from iqa.cli import refuse_renamed_overrides, run_task
from iqa.experiment import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    results = run_task(train, cfg) or {}
    value = results.get(cfg.get("optimized_metric", "test/srcc"))
    return value if value is not None and math.isfinite(value) else None  # sweepers get None, never NaN


if __name__ == "__main__":
    refuse_renamed_overrides()
    main()
