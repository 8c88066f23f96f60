"""The published methods (LoDa, QMamba/LQMamba, visual prompts on multimodal LLMs), one file each;
:mod:`iqa.registry` imports every module here."""
