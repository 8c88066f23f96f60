"""Image-level IQA metrics (torchmetrics), logistic mapping and plots."""

from iqa.metrics.image_scores import KRCC, PLCC, RMSE, SRCC, ImageScores, IQAMetrics

__all__ = ["IQAMetrics", "ImageScores", "KRCC", "PLCC", "RMSE", "SRCC"]
