"""Baseline models (timm backbones + regression head)."""

from iqa.models.baselines import cnniqa, timm_regressor  # noqa: F401  (registers the models)
