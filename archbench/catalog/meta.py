"""A model's twin on the ``meta`` device: the same modules and shapes, no memory and no arithmetic — what
counting layers, locating a failure and checking a model's input sizes run on instead of the model."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def meta_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers live on ``meta``: the same modules and shapes,
    no memory and no arithmetic (hooks registered on ``model`` are copied too)."""
    with torch.inference_mode(False):
        memo: dict[int, Any] = {}
        for p in model.parameters():
            memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for b in model.buffers():
            memo[id(b)] = torch.empty_like(b, device="meta")
        return copy.deepcopy(model, memo)
