"""Builder families, model lookup and construction.

Families are functions ``(**kwargs) -> nn.Module`` registered by name with :func:`register_family`
(registering a name twice raises), after torchvision's ``models/_api.py``. The built-in families live in
``archbench/models/`` (one module per family) and are imported only when one is needed, so looking at
specs never imports torch. torchvision's classification zoo is reachable by name without a spec file.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import inspect
import re
import types
import typing
from collections.abc import Sequence
from typing import Any, Callable, Iterable, Mapping

from archbench.errors import DuplicateFamilyError, SpecError, UnknownModelError
from archbench.catalog.spec import ModelSpec, load_catalog

Builder = Callable[..., Any]  # returns torch.nn.Module

_FAMILIES: dict[str, Builder] = {}
# Built-in families, imported on first use (their modules import torch).
_BUILTIN_FAMILY_MODULES = {
    "wrn": "archbench.catalog.models.wrn",
    "resnext": "archbench.catalog.models.resnext",
    "resnet-cifar": "archbench.catalog.models.resnet_cifar",
    "mnist-cnn": "archbench.catalog.models.mnist_cnn",
}
TORCHVISION = "torchvision"
SOURCES = ("specs", "torchvision", "all")


def register_family(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a builder family under ``name``; a second registration of a name raises."""

    def decorator(fn: Builder) -> Builder:
        if name in _FAMILIES:
            raise DuplicateFamilyError(f"family '{name}' is already registered (by {_FAMILIES[name].__module__}).")
        _FAMILIES[name] = fn
        return fn

    return decorator


def family_names() -> list[str]:
    return sorted({*_FAMILIES, *_BUILTIN_FAMILY_MODULES})


def get_family(name: str) -> Builder:
    if name not in _FAMILIES and name in _BUILTIN_FAMILY_MODULES:
        importlib.import_module(_BUILTIN_FAMILY_MODULES[name])
    if name not in _FAMILIES:
        raise KeyError(name)
    return _FAMILIES[name]


# ----------------------------------------------------------------------------------------------- lookup


def list_models(
    pattern: str | None = None, source: str = "all", extra_dirs: Iterable[str] = ()
) -> list[ModelSpec]:
    """Every known model whose name matches the fnmatch ``pattern`` (``wrn-*``), specs first.

    ``source="specs"`` lists spec files only and imports neither torch nor torchvision."""
    specs: list[ModelSpec] = []
    if source in ("specs", "all"):
        specs += list(load_catalog(extra_dirs).values())
    if source in ("torchvision", "all"):
        from archbench.catalog.models import torchvision_zoo

        taken = {s.name for s in specs}
        specs += [torchvision_zoo.spec(n) for n in torchvision_zoo.names() if n not in taken]
    if pattern:
        specs = [s for s in specs if fnmatch.fnmatchcase(s.name, pattern)]
    return sorted(specs, key=lambda s: (s.source != "specs", s.source, s.family, _natural_key(s.name)))


def _natural_key(name: str) -> list:
    """``wrn-40-2`` before ``wrn-40-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def get_spec(name: str, extra_dirs: Iterable[str] = ()) -> ModelSpec:
    """The spec of a model by name: a spec file first, then torchvision's zoo; else
    :class:`UnknownModelError` with the closest names."""
    catalog = load_catalog(extra_dirs)
    if name in catalog:
        return catalog[name]
    from archbench.catalog.models import torchvision_zoo

    tv_names = torchvision_zoo.names()
    if name in tv_names:
        return torchvision_zoo.spec(name)
    suggestions = difflib.get_close_matches(name, [*catalog, *tv_names], n=3, cutoff=0.6)
    raise UnknownModelError(name, suggestions)


# ------------------------------------------------------------------------------------------- building


def build_model(spec: ModelSpec, device: str = "cpu", overrides: Mapping[str, Any] | None = None):
    """Build ``spec`` (with ``--set`` overrides merged in) on ``device``.

    ``device="meta"`` allocates nothing: use it when only counts are needed."""
    import torch

    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    spec = spec.with_args(overrides)
    if spec.family == TORCHVISION:
        from archbench.catalog.models import torchvision_zoo

        builder: Builder = torchvision_zoo.builder(spec.name)
    else:
        builder = _family_for(spec)
        _check_arguments(spec, builder, given)
    placement = _parameters_on_meta() if device == "meta" else torch.device(device)
    where = _where(spec, given)
    with placement:
        try:
            return builder(**spec.args)
        except SpecError as exc:  # a family's own validation (e.g. an invalid WRN depth)
            raise SpecError(f"{where}: model '{spec.name}': {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{where}: model '{spec.name}' cannot be built with {dict(spec.args)}: {exc}") from exc


@contextlib.contextmanager
def _parameters_on_meta():
    """Create every parameter and buffer on the ``meta`` device (no memory, no init cost).

    ``with torch.device("meta")`` would also put the tensors a constructor computes its configuration
    with on ``meta`` (torchvision's RegNets call ``.tolist()`` on one and fail), so instead, like
    accelerate's ``init_empty_weights``, move each parameter/buffer to ``meta`` as it is registered."""
    from torch import nn

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


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _family_for(spec: ModelSpec) -> Builder:
    try:
        return get_family(spec.family)
    except KeyError:
        raise SpecError(
            f"{_where(spec)}: model '{spec.name}' names unknown family '{spec.family}'; "
            f"known families: {', '.join(family_names())}."
        ) from None


def builder_arguments(builder: Builder) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(builder).parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def _check_arguments(spec: ModelSpec, builder: Builder, overrides: Mapping[str, Any] = types.MappingProxyType({})) -> None:
    """Unknown arguments, missing required ones and values of the wrong type are errors naming the spec,
    or the override (``--set``) when the argument came from one."""
    params = builder_arguments(builder)
    hints = typing.get_type_hints(builder)
    valid = ", ".join(f"{n}: {_type_name(hints.get(n))}" for n in params)
    for key, value in spec.args.items():
        where = _where(spec, {key: value} if key in overrides else {})
        if key not in params:
            raise SpecError(
                f"{where}: model '{spec.name}': family '{spec.family}' has no argument '{key}'. "
                f"Valid arguments: {valid}."
            )
        if key in hints and not _matches(value, hints[key]):
            raise SpecError(
                f"{where}: model '{spec.name}': argument '{key}' = {value!r} should be "
                f"{_type_name(hints[key])}."
            )
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in spec.args]
    if missing:
        raise SpecError(f"{_where(spec)}: model '{spec.name}': missing argument(s) {', '.join(missing)}. Valid arguments: {valid}.")


def _where(spec: ModelSpec, overrides: Mapping[str, Any] = types.MappingProxyType({})) -> str:
    """The spec file (or source), or the overrides (``--set``) when they are what was given."""
    if overrides:
        return "--set " + " ".join(f"{k}={v!r}" for k, v in overrides.items())
    return str(spec.path) if spec.path else spec.source


def _matches(value: Any, annotation: Any) -> bool:
    """A small structural type check for the annotations families use (int, float, bool, str, list[int],
    unions and Literal)."""
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is None:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple, Sequence):
        item = (typing.get_args(annotation) or (Any,))[0]
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    if annotation is None:
        return "any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
