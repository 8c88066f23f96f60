"""Train and test one experiment: ``python train.py model=... data=... [-m sweeps]``."""

import hydra
from omegaconf import DictConfig

from iqa.experiment import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    results = train(cfg)
    return results.get(cfg.get("optimized_metric", "test/srcc"))


if __name__ == "__main__":
    main()
