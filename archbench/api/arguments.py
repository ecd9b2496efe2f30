"""The models the Python API takes, checked before anything runs (the generic checks of an argument are
:mod:`archbench.arguments`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archbench.arguments import sequence, text, type_error, value_error

MODEL = "an nn.Module, a class or factory returning one, a ModelSource or a model name (str)"


def model(value: Any, name: str = "model") -> Any:
    """What the API can make a model of; a name is looked up later (an unknown one says so then)."""
    if isinstance(value, str):
        return text(value, name, empty=False)
    from archbench.catalog.source import ModelSource

    if isinstance(value, ModelSource) or callable(value) or _is_module(value):
        return value
    raise type_error(name, MODEL, value)


def named_models(value: Any, name: str, *, allow_single: bool) -> dict[str | None, Any]:
    """``{name: model}`` from a mapping, a sequence (``compare``) or one model (``bench``; name ``None``)."""
    if isinstance(value, Mapping):
        if not value:
            raise value_error(name, "at least one model", value)
        for key in value:
            text(key, f"{name} key {key!r}", empty=False)
        return {key: model(m, f"{name}[{key!r}]") for key, m in value.items()}
    if allow_single:
        return {None: model(value, name)}
    what = f"a mapping {{name: model}} or a sequence of models, each {MODEL}"
    if isinstance(value, str):
        raise type_error(name, what, value)
    items = sequence(value, name, what)
    return {i: model(m, f"{name}[{i}]") for i, m in enumerate(items)}  # type: ignore[misc]


def _is_module(value: Any) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(value, nn.Module)
