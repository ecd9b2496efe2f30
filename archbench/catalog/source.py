"""A model source: anything with a name, a default input and a way to build a fresh ``nn.Module``.

The core (summaries, counts, sweeps, comparisons) takes a source, never a spec: a
:class:`~archbench.catalog.spec.ModelSpec` is one kind (a registered family or torchvision's zoo, from
TOML data); :class:`ModuleSource` wraps a module or a factory a user holds in Python. Nothing here
imports torch at module level.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from archbench.errors import PATH_ECHO_LIMIT, quoted
from archbench.parsing import InputShape, format_input

DEFAULT_INPUT: InputShape = (3, 224, 224)


@runtime_checkable
class ModelSource(Protocol):
    """What the core needs to know about a model."""

    name: str
    family: str
    description: str
    input: InputShape
    params: int | None  # expected parameter count, when the source states one
    source: str  # where it comes from: "specs", "user", "torchvision", "python", ...

    @property
    def input_str(self) -> str: ...

    def build(self, device: str = "cpu") -> Any:
        """A fresh ``nn.Module`` on ``device`` (``meta``: no memory), in its default (training) mode."""
        ...

    def inputs_factory(self) -> Callable[..., Any] | None:
        """``make_inputs(batch, input_shape, dtype, device)`` for a model whose forward takes something
        other than one image tensor; ``None`` for image models."""
        ...


@dataclass(frozen=True, eq=False)
class ModuleSource:
    """A model held in Python: an ``nn.Module`` instance (copied for every build, so the caller's model is
    never changed) or a factory returning one (called with ``kwargs`` for every build).

    Compared by identity: two sources wrapping the same object under two names are two models."""

    obj: Any
    name: str
    input: InputShape = DEFAULT_INPUT
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    make_inputs: Callable[..., Any] | None = None
    description: str = ""
    family: str = "python"
    source: str = "python"
    params: int | None = None

    @property
    def input_str(self) -> str:
        return format_input(self.input)

    def build(self, device: str = "cpu") -> Any:
        from torch import nn

        if isinstance(self.obj, nn.Module):
            if str(device) == "meta":  # shapes only: the weights are not copied first
                from archbench.catalog.meta import meta_twin

                return meta_twin(self.obj)
            return copy.deepcopy(self.obj).to(device)
        model = self._call_factory(device)
        if not isinstance(model, nn.Module):
            from archbench.errors import SpecError

            raise SpecError(f"model {quoted(self.name, PATH_ECHO_LIMIT)}: its factory returned {type(model).__name__}, not an nn.Module.")
        return model

    def _call_factory(self, device: str) -> Any:
        """``obj(**kwargs)`` on ``device``; the user's code failing (or exiting) is a located
        :class:`~archbench.catalog.grammar.UserCodeError`, as for a model named by a reference."""
        from archbench.catalog.grammar import UserCodeError
        from archbench.catalog.loading import locate, one_line
        from archbench.catalog.meta import build_on
        from archbench.oom import is_out_of_memory
        from archbench.usercode import code_roots, exits_as_failures

        try:
            with exits_as_failures(f"building model {quoted(self.name, PATH_ECHO_LIMIT)}"):
                return build_on(device, lambda: self.obj(**self.kwargs))
        except Exception as exc:  # noqa: BLE001 - the user's class or factory failed: located
            if is_out_of_memory(exc):
                raise
            raise UserCodeError(f"{locate(exc, code_roots(self.obj))}: model {quoted(self.name, PATH_ECHO_LIMIT)}: "
                                f"{_default_name(self.obj)} raised {one_line(exc)}") from exc

    def inputs_factory(self) -> Callable[..., Any] | None:
        return self.make_inputs


def as_source(model: Any, *, name: str | None = None, input: InputShape | None = None,
              make_inputs: Callable[..., Any] | None = None, extra_dirs=()) -> ModelSource:
    """A source for what a user gave: a source as is, a model reference (``resnext-50``, ``resnet50``,
    ``timm:convnext_tiny``, ``mypkg.models:MyNet``, ``./nets/mynet.py:MyNet``; see
    :mod:`archbench.catalog.refs`), an ``nn.Module`` instance or a class/factory returning one."""
    if isinstance(model, str):
        from archbench.catalog.refs import resolve_model

        return resolve_model(model, extra_dirs=extra_dirs)
    if isinstance(model, ModelSource) and not _is_module(model):
        return model
    label = name or _default_name(model)
    if make_inputs is not None:
        from archbench.catalog.input_factory import input_factory

        make_inputs = input_factory(make_inputs, _default_name(make_inputs))
    return ModuleSource(model, label, tuple(input) if input else DEFAULT_INPUT, make_inputs=make_inputs)


def _is_module(obj: Any) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(obj, nn.Module)


def _default_name(obj: Any) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__
