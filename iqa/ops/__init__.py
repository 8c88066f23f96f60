"""Numerical operators shared by the models."""

from iqa.ops.selective_scan import selective_scan

__all__ = ["selective_scan"]
