"""Models on the ``meta`` device, made in ONE place: built there (:func:`build_on`, for every builder — a spec's,
a family's, a user's class or factory) or copied there (:func:`meta_twin`, for a model a user holds): the same
modules and shapes, no memory and no arithmetic — what counting layers, locating a failure and checking a
model's size run on instead of the model."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn

T = TypeVar("T")


def build_on(device: str, build: Callable[[], T]) -> T:
    """``build()`` with the tensors it creates on ``device``. On ``meta``, each parameter and buffer moves
    there as it is registered (:func:`parameters_on_meta`); a builder that fails so (timm's hybrid ViTs size
    a layer by running their stem on a CPU tensor) runs again under ``torch.device("meta")``."""
    if str(device) != "meta":
        with torch.device(device):
            return build()
    try:
        with parameters_on_meta():
            return build()
    except RuntimeError as exc:
        if "meta" not in str(exc):
            raise
    with torch.device("meta"):
        return build()


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


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create every parameter and buffer on the ``meta`` device (no memory, no init cost).

    ``with torch.device("meta")`` would also put the tensors a constructor computes its configuration
    with on ``meta`` (torchvision's RegNets call ``.tolist()`` on one and fail), so instead, like
    accelerate's ``init_empty_weights``, move each parameter/buffer to ``meta`` as it is registered."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def to_meta_parameter(module, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def to_meta_buffer(module, name, tensor, persistent=True):
        if tensor is not None:
            tensor = tensor.to("meta")
        register_buffer(module, name, tensor, persistent=persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = to_meta_parameter, to_meta_buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer
