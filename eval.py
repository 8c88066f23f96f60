"""Evaluate a checkpoint: ``python eval.py ckpt_path=... [data=livec | images=folder]``."""

import hydra
from omegaconf import DictConfig

from iqa.cli import refuse_renamed_overrides, run_task
from iqa.experiment import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_task(evaluate, cfg)


if __name__ == "__main__":
    refuse_renamed_overrides()
    main()
