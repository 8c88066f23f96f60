"""Zero-shot scoring: a frozen multimodal LLM that reads quality from the logits of its rating
words (``model=vp_mplug`` / ``vp_mllm``, Q-Align-style) scores images without any training —
the baseline a visual prompt is compared against (``python eval.py model=vp_mplug
model.hf_folder=<folder> prompt=none images=... | data=...``)."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from iqa.data.transforms import MultiCrop
from iqa.errors import ConfigurationError
from iqa.models.pipeline import ScoringPipeline
from iqa.scorer import Scorer
from iqa.training.module import IQAModule

DEFAULT_SIDE = 224


def zero_shot_module(cfg: DictConfig) -> IQAModule:
    """The configured ``model`` (and ``prompt``, usually none) in an :class:`IQAModule`
    for testing, refused unless the model reads quality without a trained head."""
    model = instantiate(cfg.model)
    if not model.scores_without_training:
        raise ConfigurationError(
            f"model={type(model).__name__} has a new regression head and scores nothing before training; "
            "zero-shot scoring needs a model that reads quality from rating words (model=vp_mplug or vp_mllm), "
            "otherwise pass ckpt_path=<run>/checkpoints/best.ckpt")
    prompt = instantiate(cfg.prompt) if cfg.get("prompt") is not None else None
    crop_size = cfg.data.crop_size if cfg.get("data") is not None else model.fixed_input_size
    return IQAModule(ScoringPipeline(model, prompt, input_size=crop_size)).eval()


def zero_shot_scorer(module: IQAModule, device: str | None = None) -> Scorer:
    """A scorer with the visual-prompt papers' test protocol: the shorter side resized to the
    model's input side, one centre crop."""
    import torch

    side = module.net.model.fixed_input_size or DEFAULT_SIDE
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Scorer(module, MultiCrop(side, 1, train=False, mode="center"), side, device)
