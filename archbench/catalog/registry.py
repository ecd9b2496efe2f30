"""Builder families, model lookup and construction.

Families are functions ``(**kwargs) -> nn.Module`` registered by name with :func:`register_family`
(registering a name twice raises), after torchvision's ``models/_api.py``. The built-in families live in
``archbench/catalog/models/`` (one module per family) and are imported only when one is needed, so looking
at specs never imports torch; plugin packages add families through entry points
(:mod:`archbench.catalog.plugins`). Models are named by references (:mod:`archbench.catalog.refs`):
specs, plugin families, torchvision's and timm's zoos, and the user's own code.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from archbench.catalog import plugins
from archbench.catalog.grammar import ModelReferenceError, UserCodeError, parse_reference
from archbench.catalog.loading import load_builder, locate, one_line, source_roots
from archbench.catalog.refs import resolve_model
from archbench.catalog.spec import ModelSpec, load_catalog
from archbench.errors import PATH_ECHO_LIMIT, DuplicateFamilyError, ModelOutOfMemoryError, SpecError, UsageError, quoted
from archbench.usercode import exits_as_failures

Builder = Callable[..., Any]  # returns torch.nn.Module

_FAMILIES: dict[str, Builder] = {}
# Built-in families, imported on first use (their modules import torch).
_BUILTIN_FAMILY_MODULES = {
    "wrn": "archbench.catalog.models.wrn",
    "resnext": "archbench.catalog.models.resnext",
    "resnet-cifar": "archbench.catalog.models.resnet_cifar",
    "mnist-cnn": "archbench.catalog.models.mnist_cnn",
}
SOURCES = ("specs", "plugins", "torchvision", "timm", "hf", "all")  # "all": specs, plugins and torchvision (timm is large)


def register_family(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a builder family under ``name``; a second registration of a name raises."""

    def decorator(fn: Builder) -> Builder:
        if name in _FAMILIES:
            raise DuplicateFamilyError(f"family {quoted(name)} is already registered (by {_FAMILIES[name].__module__}).")
        _FAMILIES[name] = fn
        return fn

    return decorator


def family_names() -> list[str]:
    return sorted({*_FAMILIES, *_BUILTIN_FAMILY_MODULES, *plugins.names()})


def get_family(name: str) -> Builder:
    """A registered or built-in family, else a plugin's (registered and built-in names come first)."""
    if name not in _FAMILIES and name in _BUILTIN_FAMILY_MODULES:
        importlib.import_module(_BUILTIN_FAMILY_MODULES[name])
    if name in _FAMILIES:
        return _FAMILIES[name]
    if name in plugins.plugins():
        return plugins.load(name)
    raise KeyError(name)


# ----------------------------------------------------------------------------------------------- lookup


def list_models(
    pattern: str | None = None, source: str = "all", extra_dirs: Iterable[str] = (),
    on_model: Callable[[str], None] | None = None,
) -> list[ModelSpec]:
    """Every known model of ``source`` (one of :data:`SOURCES`) whose name matches the fnmatch ``pattern``
    (``wrn-*``; ``convnext*`` or ``timm:convnext*`` for timm), specs first.

    ``source="specs"`` lists spec files only and imports neither torch nor torchvision (nor a spec's
    builder); ``"plugins"`` reads entry points only. ``"timm"`` counts each model's parameters on ``meta``
    (cached), calling ``on_model(name)`` before each."""
    if source not in SOURCES:
        raise UsageError(f"source {quoted(source)} is not one of: {', '.join(SOURCES)}.")
    wanted = ("specs", "plugins", "torchvision") if source == "all" else (source,)
    specs: list[ModelSpec] = []
    if "specs" in wanted:
        specs += list(load_catalog(extra_dirs).values())
    if "plugins" in wanted:
        specs += [plugins.spec(n) for n in plugins.names() if n not in {s.name for s in specs}]
    if "torchvision" in wanted:
        from archbench.catalog.models import torchvision_zoo

        taken = {s.name for s in specs}
        specs += [torchvision_zoo.spec(n) for n in torchvision_zoo.names() if n not in taken]
    if "timm" in wanted:
        from archbench.catalog.models import timm_zoo

        specs += timm_zoo.listing(pattern, on_model)
    if "hf" in wanted:
        from archbench.catalog.models import hf_zoo

        specs += hf_zoo.listing(pattern)
    if pattern:
        specs = [s for s in specs if _name_matches(s.name, pattern)]
    return sorted(specs, key=lambda s: (s.source != "specs", s.source, s.family, _natural_key(s.name)))


def _name_matches(name: str, pattern: str) -> bool:
    """``convnext*`` matches ``timm:convnext_tiny`` as well as a name without a prefix."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name.partition(":")[2], pattern)


def _natural_key(name: str) -> list:
    """``wrn-40-2`` before ``wrn-40-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def get_spec(name: str, extra_dirs: Iterable[str] = ()) -> ModelSpec:
    """The spec of a model reference (see :func:`archbench.catalog.refs.resolve_model`): a spec file first,
    then a plugin family, then torchvision's zoo, or a prefixed or code reference; else
    :class:`~archbench.errors.UnknownModelError` with the closest names."""
    return resolve_model(name, extra_dirs=extra_dirs)


# ------------------------------------------------------------------------------------------- building


def build_model(spec: ModelSpec, device: str = "cpu", overrides: Mapping[str, Any] | None = None):
    """Build ``spec`` (with ``overrides`` merged in, as given per run) on ``device``: with its family, or
    with what its ``builder`` reference names — a class or factory, called with the arguments (checked
    against its signature), or an ``nn.Module`` instance, copied (the instance is never changed).

    ``device="meta"`` allocates nothing: use it when only counts are needed."""
    from torch import nn

    from archbench.oom import is_out_of_memory, oom_reason

    spec = spec.with_args(overrides)
    builder = load_builder(spec.builder) if spec.builder else _family_for(spec)
    if isinstance(builder, nn.Module):
        return _copy_of_instance(spec, builder, device)
    _check_arguments(spec, builder)
    roots = _user_code_roots(spec)
    try:
        with exits_as_failures(f"building model {quoted(spec.name, PATH_ECHO_LIMIT)}"):
            model = _call(builder, spec.args, device)
    except SpecError as exc:  # a family's own validation (e.g. an invalid WRN depth)
        raise SpecError(f"{_where(spec)}model {quoted(spec.name, PATH_ECHO_LIMIT)}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the user's code failed: located; a family's: its arguments
        if is_out_of_memory(exc):
            raise ModelOutOfMemoryError(f"model {quoted(spec.name, PATH_ECHO_LIMIT)} with {dict(spec.args)} ran out of memory while being "
                                        f"built on {device} (its weights alone): {oom_reason(exc)}") from exc
        if roots is not None:
            raise UserCodeError(f"{locate(exc, roots)}: model {quoted(spec.name, PATH_ECHO_LIMIT)}: {_builder_label(spec, builder)} raised "
                                f"{one_line(exc)}") from exc
        # torch's own errors too (a negative width: "Trying to create tensor with negative dimension")
        raise SpecError(f"{_where(spec)}model {quoted(spec.name, PATH_ECHO_LIMIT)} cannot be built with {dict(spec.args)}: "
                        f"{exc if isinstance(exc, (TypeError, ValueError)) else one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelReferenceError(f"model {quoted(spec.name, PATH_ECHO_LIMIT)}: {_builder_label(spec, builder)} returned "
                                  f"{type(model).__name__}, not an nn.Module.")
    return model


def _call(builder: Builder, args: Mapping[str, Any], device: str):
    from archbench.catalog.meta import build_on  # imports torch

    return build_on(device, lambda: builder(**args))


def _copy_of_instance(spec: ModelSpec, instance: Any, device: str):
    from archbench.catalog.source import ModuleSource

    if spec.args:
        raise SpecError(f"model {quoted(spec.name, PATH_ECHO_LIMIT)} is an nn.Module instance: it takes no arguments (given "
                        f"{dict(spec.args)}). Name its class or a factory to pass arguments.")
    return ModuleSource(instance, spec.name).build(device)


def _user_code_roots(spec: ModelSpec):
    """Where the code that builds ``spec`` lives, when it is the user's (a code reference or a plugin
    family): failures are located there. None for archbench's, torchvision's and timm's builders."""
    if spec.builder:
        reference = parse_reference(spec.builder)
        if reference.is_code:
            return source_roots(spec.builder)
        family = reference.target if reference.kind == "plugin" else None
    else:
        family = spec.family
    if family is None or family in _FAMILIES or family in _BUILTIN_FAMILY_MODULES or family not in plugins.plugins():
        return None
    return plugins.roots(family)


def _builder_label(spec: ModelSpec, builder: Builder) -> str:
    if spec.builder:
        return getattr(builder, "__qualname__", None) or spec.builder
    return f"family {quoted(spec.family)}"


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _family_for(spec: ModelSpec) -> Builder:
    try:
        return get_family(spec.family)
    except KeyError:
        raise SpecError(
            f"{_where(spec)}model {quoted(spec.name, PATH_ECHO_LIMIT)} names unknown family {quoted(spec.family)}; "
            f"known families: {', '.join(family_names())}. A spec can name Python code instead: builder = \"mypkg.models:MyNet\"."
        ) from None


def builder_arguments(builder: Builder) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in _signature(builder).parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def _signature(builder: Builder) -> inspect.Signature:
    try:
        return inspect.signature(builder)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        return inspect.Signature([inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])


def _type_hints(builder: Builder) -> dict[str, Any]:
    """The builder's annotations (a class's ``__init__``'s); none when they do not resolve (e.g. a forward
    reference in the user's code)."""
    try:
        return typing.get_type_hints(builder.__init__ if isinstance(builder, type) else builder)
    except Exception:  # noqa: BLE001 - unresolvable annotations are not checked, not an error
        return {}


def _check_arguments(spec: ModelSpec, builder: Builder) -> None:
    """Unknown arguments (unless the builder takes ``**kwargs``), missing required ones and values of the
    wrong type are errors naming the spec, or the arguments given per run (``--set``) when the argument
    came from them."""
    params = builder_arguments(builder)
    open_ended = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in _signature(builder).parameters.values())
    hints = _type_hints(builder)
    valid = ", ".join(f"{n}: {_type_name(hints.get(n), p.default)}" for n, p in params.items()) or "none"
    for key, value in spec.args.items():
        where = _where(spec, {key: value} if key in spec.set_args else {})
        if key not in params and not open_ended:
            close = difflib.get_close_matches(key, list(params), n=1, cutoff=0.75)
            guess = f" Did you mean '{close[0]}'?" if close else ""
            raise SpecError(
                f"{where}model {quoted(spec.name, PATH_ECHO_LIMIT)}: {_builder_label(spec, builder)} has no argument {quoted(key)}.{guess} "
                f"Valid arguments: {valid}."
            )
        if key in hints and not _matches(value, hints[key]):
            raise SpecError(
                f"{where}model {quoted(spec.name, PATH_ECHO_LIMIT)}: argument {quoted(key)} = {value!r} should be {_type_name(hints[key])}."
            )
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in spec.args]
    if missing:
        raise SpecError(f"{_where(spec)}model {quoted(spec.name, PATH_ECHO_LIMIT)}: missing argument(s) {', '.join(missing)}. Valid "
                        f"arguments: {valid}.")


def _where(spec: ModelSpec, overrides: Mapping[str, Any] = types.MappingProxyType({})) -> str:
    """``"<where>: "``: the spec file (or source), or the overrides (``--set``) when they are what was
    given; nothing for a reference to code (the model's name says it)."""
    if overrides:
        return "--set " + " ".join(f"{k}={v!r}" for k, v in overrides.items()) + ": "
    if spec.path:
        return f"{spec.path}: "
    return "" if spec.builder and parse_reference(spec.builder).is_code else f"{spec.source}: "


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


def _type_name(annotation: Any, default: Any = inspect.Parameter.empty) -> str:
    """An argument's type as the user reads it: its annotation, else its default's type (an unannotated
    ``width=32`` reads ``int (from its default)``), else ``unannotated``."""
    if annotation is None:
        if default is inspect.Parameter.empty or default is None:
            return "unannotated"
        return f"{type(default).__name__} (from its default)"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
