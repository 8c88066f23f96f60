"""Baseline models (CNNIQA, timm backbones + regression head), one file each; :mod:`iqa.registry`
imports every module here."""
