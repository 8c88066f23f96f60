"""Activation (gradient) checkpointing of one transformer layer."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def run_layer(layer: nn.Module, *inputs, checkpointed: bool):
    """``layer(*inputs)``; when ``checkpointed`` and autograd is recording, the layer's activations
    are not kept but recomputed during backward (memory for compute).

    Unlike the official code, this does not depend on ``layer.training``: a frozen model in eval
    mode still needs it when gradients flow to its input (pixel prompts). The non-reentrant
    variant propagates gradients to the inputs even when no parameter requires grad.
    """
    if checkpointed and torch.is_grad_enabled():
        return checkpoint(layer, *inputs, use_reentrant=False)
    return layer(*inputs)
