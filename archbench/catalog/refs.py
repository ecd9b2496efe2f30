"""Model references: one grammar wherever a model is named — the CLI's MODEL arguments, study files, a
spec file's ``builder`` and the Python API — and one resolver, :func:`resolve_model`.

==========================  ===========================================================================
``resnext-50``              a spec (built in, ``--specs DIR`` or ``ARCHBENCH_SPECS``)
``mynet``                   a plugin family (entry-point group ``archbench.families``), default arguments
``resnet50``                torchvision's classification zoo
``tv:resnet50``             torchvision, explicitly (``plugin:mynet`` likewise)
``timm:convnext_tiny``      timm (an optional extra), ``pretrained=False``: nothing is downloaded
``hf:vit``                  Hugging Face transformers (an optional extra), from a config: a model type,
                            ``hf:org/name`` in the local cache or ``hf:./folder`` with a config.json; never a
                            download (:mod:`archbench.catalog.models.hf_zoo`)
``mypkg.models:MyNet``      an importable object: an ``nn.Module`` subclass, a factory returning one, or an
                            instance (never changed: every build is a copy); the current directory is
                            importable, as for ``python -m``
``./nets/mynet.py:MyNet``   the same, loaded from a file (any path ending in ``.py``), nothing installed
==========================  ===========================================================================

A plain name is looked up in that order; a name found in more than one place takes the first and says so
with an :class:`AmbiguousModelWarning` naming the prefix that picks the other. Parsing imports nothing;
user code is imported only to resolve or build a model that names it. A failure inside user code (a
syntax error, an exception while importing or building) is located to the file and line in the user's
code where it happened.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from archbench import errors
from archbench.catalog.spec import ModelSpec, load_catalog
from archbench.errors import SpecError, UnknownModelError, quoted
from archbench.usercode import UserCodeExit, exit_one_line, exits_as_failures, shown_path

Kind = Literal["name", "tv", "timm", "hf", "plugin", "module", "file"]
PREFIXES: tuple[Kind, ...] = ("tv", "timm", "hf", "plugin")
CODE_KINDS = ("module", "file")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_FORMS = ("a model name (resnext-50, resnet50), tv:NAME, timm:NAME, hf:MODEL_TYPE, module:attr (mypkg.models:MyNet) or "
          "PATH.py:attr (./nets/mynet.py:MyNet)")


class ModelReferenceError(SpecError):
    """A model reference that does not parse, or names something that is not there (a module, a file, an
    attribute, a timm model) or that is not a model."""


class UserCodeError(SpecError):
    """The user's code failed while archbench imported it or built a model with it (located to file:line)."""


class AmbiguousModelWarning(UserWarning):
    """A plain name that more than one source knows: the first was taken; the message says how to pick
    another."""


@dataclass(frozen=True)
class Reference:
    """A parsed reference: ``kind``, the name, dotted module or file path (``target``) and, for code,
    the attribute path (``attr``)."""

    text: str
    kind: Kind
    target: str
    attr: str = ""

    @property
    def is_code(self) -> bool:
        return self.kind in CODE_KINDS


def parse_reference(text: str) -> Reference:
    """Parse a model reference (no import). Raises :class:`ModelReferenceError` naming the accepted forms."""
    text = str(text).strip()
    if not text:
        raise ModelReferenceError(f"an empty model name: give {_FORMS}.")
    head, sep, rest = text.partition(":")
    if sep and head in PREFIXES:
        if not rest.strip():
            raise ModelReferenceError(f"'{text}' names no model after '{head}:': e.g. {head}:resnet50.")
        return Reference(text, head, rest.strip())  # type: ignore[arg-type]
    path, sep, attr = text.rpartition(":")
    if not sep:
        if text.endswith(".py"):  # a file without its attribute: loading it lists what it has
            return Reference(text, "file", text)
        return Reference(text, "name", text)
    if path.endswith(".py") or "/" in path or os.sep in path or path.startswith("."):
        if not path.endswith(".py"):
            raise ModelReferenceError(f"{quoted(path)} is not a Python file: a file reference is PATH.py:attr, "
                                      "e.g. ./nets/mynet.py:MyNet.")
        return Reference(text, "file", path, _attribute_path(text, attr))
    if _DOTTED.match(path):
        return Reference(text, "module", path, _attribute_path(text, attr))
    raise ModelReferenceError(f"{quoted(text)} is not a model reference: expected {_FORMS}.")


def _attribute_path(text: str, attr: str) -> str:
    if attr and not _DOTTED.match(attr):
        raise ModelReferenceError(f"{quoted(text)}: {quoted(attr)} is not an attribute name: expected e.g. MyNet or "
                                  "build_mynet after the colon.")
    return attr


def builder_reference(text: str, base_dir: Path | None = None) -> str:
    """A reference a spec can build with (anything but a plain name), a file path in it made absolute
    (relative to ``base_dir``, default the current directory)."""
    reference = parse_reference(text)
    if reference.kind == "name":
        raise ModelReferenceError(f"'{text}' is a model name, not a builder: expected tv:NAME, timm:NAME, "
                                  "hf:MODEL_TYPE, module:attr or PATH.py:attr.")
    return _absolute(reference, base_dir)


def code_reference(text: str, base_dir: Path | None = None) -> str:
    """A reference to Python code (``module:attr`` or ``PATH.py:attr``, e.g. an input factory), a file
    path made absolute."""
    reference = parse_reference(text)
    if not reference.is_code:
        raise ModelReferenceError(f"{quoted(text)} does not name Python code: expected module:attr "
                                  "(mypkg.data:make_inputs) or PATH.py:attr (./data.py:make_inputs).")
    return _absolute(reference, base_dir)


def _absolute(reference: Reference, base_dir: Path | None) -> str:
    if reference.kind == "hf":  # hf:./folder
        from archbench.catalog.models import hf_zoo

        return hf_zoo.absolute(reference.target, base_dir)
    if reference.kind != "file":
        return reference.text
    path = Path(reference.target).expanduser()
    path = path if path.is_absolute() else Path(base_dir or Path.cwd()).absolute() / path
    return f"{os.path.normpath(path)}:{reference.attr}" if reference.attr else str(os.path.normpath(path))


def family_of(builder: str) -> str:
    """The family a builder reference's models are listed under."""
    reference = parse_reference(builder)
    return {"tv": "torchvision", "timm": "timm", "hf": "transformers", "plugin": reference.target}.get(reference.kind, "python")


# ------------------------------------------------------------------------------------------ resolving


def resolve_model(ref: str, *, extra_dirs: Iterable[str | Path] = (), args: Mapping[str, Any] | None = None,
                  inputs: str | None = None) -> ModelSpec:
    """The :class:`ModelSpec` a reference names, with ``args`` merged into its builder arguments and
    ``inputs`` (an input factory reference) set. Code it names is imported now, so a bad reference fails
    before anything runs; a model is not built."""
    reference = parse_reference(ref)
    spec = _RESOLVERS[reference.kind](reference, extra_dirs)
    if inputs is not None:
        spec = replace(spec, inputs=code_reference(inputs))
    if spec.inputs is not None:
        load_inputs_factory(spec.inputs)
    return spec.with_args(args)


def _resolve_name(reference: Reference, extra_dirs: Iterable[str | Path]) -> ModelSpec:
    from archbench.catalog import plugins

    name = reference.target
    catalog = load_catalog(extra_dirs)
    found: list[tuple[ModelSpec, str, str]] = []  # (spec, what it is, the prefix that picks it)
    if name in catalog:
        found.append((catalog[name], f"the spec ({catalog[name].path or 'built in'})", ""))
    if name in plugins.names():
        plugin = plugins.spec(name)
        found.append((plugin, f"the plugin family ({plugin.source.removeprefix('plugin:')})", "plugin:"))
    if name.isidentifier() and name in _torchvision_names():  # torchvision's names are identifiers
        found.append((_torchvision_spec(name), "torchvision's model", "tv:"))
    if not found:
        raise UnknownModelError(name, _suggestions(name, catalog))
    (spec, taken, _), others = found[0], found[1:]
    if others:
        picks = "; ".join(f"write {prefix}{name} for {_short(what)}" for _, what, prefix in others)
        also = " and ".join(what for _, what, _ in others)
        warnings.warn(AmbiguousModelWarning(f"'{name}' names {taken} and {also}: {_short(taken)} is taken; {picks}."),
                      stacklevel=3)
    return spec


def _short(what: str) -> str:
    return what.split(" (")[0]


def _suggestions(name: str, catalog: Mapping[str, ModelSpec]) -> list[str]:
    from archbench.catalog import plugins
    from archbench.catalog.models import timm_zoo

    close = difflib.get_close_matches(name, [*catalog, *plugins.names(), *_torchvision_names()], n=3, cutoff=0.6)
    if timm_zoo.installed() and name in timm_zoo.names():
        close.insert(0, f"timm:{name}")
    return close


def _torchvision_names() -> tuple[str, ...]:
    from archbench.catalog.models import torchvision_zoo

    return torchvision_zoo.names()


def _torchvision_spec(name: str) -> ModelSpec:
    from archbench.catalog.models import torchvision_zoo

    return torchvision_zoo.spec(name)


def _resolve_tv(reference: Reference, extra_dirs) -> ModelSpec:
    name = reference.target
    if name not in _torchvision_names():
        close = difflib.get_close_matches(name, _torchvision_names(), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(f'tv:{c}' for c in close)}?" if close else ""
        raise ModelReferenceError(f"torchvision has no classification model '{name}'.{hint}")
    return replace(_torchvision_spec(name), name=reference.text)


def _resolve_timm(reference: Reference, extra_dirs) -> ModelSpec:
    from archbench.catalog.models import timm_zoo

    return timm_zoo.spec(reference.target, name=reference.text)


def _resolve_hf(reference: Reference, extra_dirs) -> ModelSpec:
    from archbench.catalog.models import hf_zoo

    return hf_zoo.spec(reference.target, name=reference.text)


def _resolve_plugin(reference: Reference, extra_dirs) -> ModelSpec:
    from archbench.catalog import plugins

    if reference.target not in plugins.names():
        known = ", ".join(plugins.names()) or "none is installed"
        raise ModelReferenceError(f"no plugin family '{reference.target}' (entry-point group "
                                  f"{plugins.GROUP}); plugin families: {known}.")
    return replace(plugins.spec(reference.target), name=reference.text)


def _resolve_code(reference: Reference, extra_dirs) -> ModelSpec:
    from archbench.catalog.source import DEFAULT_INPUT

    obj = load_model_object(reference.text)  # errors quote the reference as the user wrote it
    return ModelSpec(name=reference.text, family="python", input=DEFAULT_INPUT, description=_describe(obj),
                     source="python", builder=_absolute(reference, None))


_RESOLVERS: dict[Kind, Callable[[Reference, Any], ModelSpec]] = {
    "name": _resolve_name, "tv": _resolve_tv, "timm": _resolve_timm, "hf": _resolve_hf, "plugin": _resolve_plugin,
    "module": _resolve_code, "file": _resolve_code,
}


def input_is_a_default(spec: ModelSpec) -> bool:
    """Whether ``spec``'s input is archbench's guess (3x224x224) rather than the model's own: a model named
    by its code or a plugin family states none (a spec file, torchvision and timm do)."""
    return spec.source == "python" or spec.source.startswith("plugin:")


def _describe(obj: Any) -> str:
    """The first line of the object's own docstring, else its qualified name."""
    target = obj if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) else type(obj)
    doc = target.__doc__ if isinstance(target.__doc__, str) else ""  # a C type's may be a descriptor
    doc = doc.strip()
    return doc.splitlines()[0] if doc else f"{target.__module__}.{target.__qualname__}"


# -------------------------------------------------------------------------------------------- loading


def load_builder(builder: str) -> Any:
    """What a builder reference builds with: a callable returning an ``nn.Module`` (torchvision's and
    timm's constructors, a plugin family, the user's class or factory) or an ``nn.Module`` instance."""
    reference = parse_reference(builder)
    if reference.kind == "tv":
        from archbench.catalog.models import torchvision_zoo

        return torchvision_zoo.builder(reference.target)
    if reference.kind == "timm":
        from archbench.catalog.models import timm_zoo

        return timm_zoo.builder(reference.target)
    if reference.kind == "hf":
        from archbench.catalog.models import hf_zoo

        return hf_zoo.builder(reference.target)
    if reference.kind == "plugin":
        from archbench.catalog import plugins

        return plugins.load(reference.target)
    return load_model_object(builder)


def load_model_object(ref: str) -> Any:
    """The object a code reference names, checked to be an ``nn.Module`` instance or a callable (a Module
    subclass, a factory)."""
    from torch import nn

    obj, module = load_object(ref)
    if isinstance(obj, types.BuiltinFunctionType):  # os:system, math:sqrt: callable, never a model factory
        raise ModelReferenceError(f"'{ref}' is a built-in function ({_describe(obj)}), not an nn.Module subclass, a "
                                  f"factory returning one or an nn.Module instance.{_candidates_text(module)}")
    if isinstance(obj, nn.Module) or callable(obj):
        return obj
    raise ModelReferenceError(f"'{ref}' is {_a(type(obj).__name__)}, not an nn.Module subclass, a factory returning "
                              f"one or an nn.Module instance.{_candidates_text(module)}")


def load_inputs_factory(ref: str) -> Callable[..., Any]:
    """The input factory a code reference names: ``make_inputs(batch, input_shape, dtype, device)``, checked
    and wrapped (see :mod:`archbench.catalog.input_factory`)."""
    from archbench.catalog.input_factory import FORM, RETURNS, input_factory

    obj, module = load_object(ref)
    if not callable(obj):
        raise ModelReferenceError(f"'{ref}' is {_a(type(obj).__name__)}, not an input factory: expected a function "
                                  f"{FORM} returning {RETURNS}.")
    return input_factory(obj, ref, source_roots(ref))


def load_object(ref: str) -> tuple[Any, types.ModuleType]:
    """Import the module or file of a code reference and return the object it names, and its module."""
    reference = parse_reference(ref)
    if not reference.is_code:
        raise ModelReferenceError(f"'{ref}' does not name Python code: expected module:attr or PATH.py:attr.")
    module = _import_file(Path(reference.target)) if reference.kind == "file" else _import_module(reference.target)
    where = reference.target
    if not reference.attr:
        raise ModelReferenceError(f"'{ref}' names no attribute: write {where}:ATTR.{_candidates_text(module)}")
    obj: Any = module
    for part in reference.attr.split("."):
        if not hasattr(obj, part):
            raise ModelReferenceError(f"'{ref}': {where} has no attribute '{reference.attr}'."
                                      f"{_did_you_mean(reference.attr, module)}{_candidates_text(module)}")
        obj = getattr(obj, part)
    return obj, module


def _import_module(name: str) -> types.ModuleType:
    _current_directory_importable()
    importlib.invalidate_caches()  # a module written since the interpreter started is found
    roots = _package_roots(name)
    try:
        with exits_as_failures(f"importing '{name}'"):
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ModelReferenceError(
                f"cannot import module '{name}': no module named '{exc.name}' in the current directory "
                f"({os.getcwd()}) or on the Python path. Run from the directory that holds it, install it, or "
                "name the file instead (./path/to/file.py:attr).") from None
        raise UserCodeError(f"{locate(exc, roots)}: importing '{name}' failed: it imports '{exc.name}', which is "
                            f"not installed ({one_line(exc)}).") from exc
    except Exception as exc:  # noqa: BLE001 - the user's module failed at import: say where and why
        raise UserCodeError(f"{locate(exc, roots)}: importing '{name}' failed: {one_line(exc)}") from exc


def _current_directory_importable() -> None:
    """As for ``python -m``: modules in the working directory are importable."""
    cwd = os.getcwd()
    if not any(entry in ("", ".") or os.path.abspath(entry) == cwd for entry in sys.path):
        sys.path.insert(0, cwd)


def _import_file(path: Path) -> types.ModuleType:
    """Load a Python file as a module (once per path; its directory goes on ``sys.path``, as for
    ``python file.py``, so it can import its neighbours)."""
    if not path.exists():
        raise ModelReferenceError(f"no such file: '{path}' (from the current directory {os.getcwd()}).")
    if not path.is_file() or path.suffix != ".py":
        raise ModelReferenceError(f"{quoted(path)} is not a Python file: a file reference is PATH.py:attr.")
    resolved = path.resolve()
    stem = re.sub(r"\W", "_", resolved.stem)
    name = f"archbench_file_{stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look the module up
    if str(resolved.parent) not in sys.path:
        sys.path.insert(0, str(resolved.parent))
    try:
        with exits_as_failures(f"loading {path}"):
            loader_spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, ModuleNotFoundError):
            raise UserCodeError(f"{locate(exc, (resolved,))}: loading {path} failed: it imports '{exc.name}', which "
                                f"is not installed ({one_line(exc)}).") from exc
        raise UserCodeError(f"{locate(exc, (resolved,))}: loading {path} failed: {one_line(exc)}") from exc
    return module


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _candidates(module: types.ModuleType) -> list[str]:
    """What in ``module`` could be a model: its own nn.Module subclasses and functions, and Module instances."""
    from torch import nn

    found = []
    for name, value in vars(module).items():
        own = getattr(value, "__module__", None) == module.__name__
        if name.startswith("_"):
            continue
        if isinstance(value, nn.Module):
            found.append(f"{name} (nn.Module instance)")
        elif own and isinstance(value, type) and issubclass(value, nn.Module):
            found.append(f"{name} (nn.Module subclass)")
        elif own and callable(value):
            found.append(f"{name} ({'class' if isinstance(value, type) else 'function'})")
    return found


def _candidates_text(module: types.ModuleType) -> str:
    found = _candidates(module)
    more = f" and {len(found) - _CANDIDATES_SHOWN} more" if len(found) > _CANDIDATES_SHOWN else ""
    return (f" It has: {', '.join(found[:_CANDIDATES_SHOWN])}{more}." if found
            else " It defines no nn.Module subclass, function or instance.")


_CANDIDATES_SHOWN = 12  # a module like os or builtins has hundreds: a message names a few


def _did_you_mean(attr: str, module: types.ModuleType) -> str:
    close = difflib.get_close_matches(attr, [n for n in vars(module) if not n.startswith("_")], n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


# ----------------------------------------------------------------------------------------- locating


def source_roots(ref: str) -> tuple[Path, ...]:
    """Where the code of a code reference lives (its file, or its top-level package's folder): frames there
    are the user's, when a failure is located. Imports nothing."""
    reference = parse_reference(ref)
    if reference.kind == "file":
        return (Path(reference.target).resolve(),)
    return _package_roots(reference.target) if reference.kind == "module" else ()


def _package_roots(module: str) -> tuple[Path, ...]:
    try:
        found = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return ()
    if found is None:
        return ()
    if found.submodule_search_locations:
        return tuple(Path(p).resolve() for p in found.submodule_search_locations)
    return (Path(found.origin).resolve(),) if found.origin else ()


def locate(exc: BaseException, roots: Iterable[Path]) -> str:
    """``file:line`` where ``exc`` happened in the user's code (the last traceback frame under ``roots``;
    the place of a syntax error), else the last frame of the traceback."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_shown(exc.filename)}:{exc.lineno}"
    roots = tuple(roots)
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if _under(Path(f.filename), roots)]
    outside_importlib = [f for f in frames if not f.filename.startswith("<")]
    chosen = (inside or outside_importlib or frames)
    if not chosen:
        return "<unknown>"
    return f"{_shown(chosen[-1].filename)}:{chosen[-1].lineno}"


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    try:
        path = path.resolve()
    except OSError:
        return False
    return any(path == root or root in path.parents for root in roots)


def _shown(filename: str) -> str:
    return shown_path(filename)


def one_line(exc: BaseException) -> str:
    """:func:`archbench.errors.one_line`; a syntax error without its place, an exit as that exit (located already)."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    if isinstance(exc, UserCodeExit) and exc.__cause__ is not None:
        return exit_one_line(exc.__cause__)
    return errors.one_line(exc)
