"""mPLUG-Owl2 (LLaMA-2 variant) on transformers 5 building blocks: backbone and offline loader."""

from iqa.models.mplug_owl2.configuration import MplugOwl2Config
from iqa.models.mplug_owl2.loading import load_mplug_owl2
from iqa.models.mplug_owl2.model import MplugOwl2ForCausalLM, MplugOwl2Output
from iqa.models.mplug_owl2.splicing import IMAGE_TOKEN_INDEX

__all__ = [
    "IMAGE_TOKEN_INDEX",
    "MplugOwl2Config",
    "MplugOwl2ForCausalLM",
    "MplugOwl2Output",
    "load_mplug_owl2",
]
