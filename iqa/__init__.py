"""iqa: an experiment framework for parameter-efficient no-reference IQA."""

from iqa.registry import create_model, list_models, register_model


def load_scorer(ckpt_path, device=None, n_crops=None):
    """Score images with a trained checkpoint; see :func:`iqa.scorer.load_scorer`."""
    from iqa.scorer import load_scorer as _load_scorer

    return _load_scorer(ckpt_path, device=device, n_crops=n_crops)


__all__ = ["create_model", "list_models", "load_scorer", "register_model"]
