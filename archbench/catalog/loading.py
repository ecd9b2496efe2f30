"""User code a reference names, imported: a builder, a model object or an input factory from
``package.module:attr`` or ``./file.py:attr`` (the current directory importable, as for ``python -m``), with
messages that name the candidates; and a failure inside user code located to its file and line."""

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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from archbench import errors
from archbench.catalog.grammar import FILE_MODULE_PREFIX, ModelReferenceError, UserCodeError, describe, parse_reference
from archbench.errors import PATH_ECHO_LIMIT, quoted
from archbench.usercode import UserCodeExit, exit_one_line, exits_as_failures, shown_path


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
        raise ModelReferenceError(f"{quoted(ref, PATH_ECHO_LIMIT)} is a built-in function ({describe(obj)}), not an nn.Module subclass, a "
                                  f"factory returning one or an nn.Module instance.{_candidates_text(module)}")
    if isinstance(obj, nn.Module) or callable(obj):
        return obj
    raise ModelReferenceError(f"{quoted(ref, PATH_ECHO_LIMIT)} is {_a(type(obj).__name__)}, not an nn.Module subclass, a factory returning "
                              f"one or an nn.Module instance.{_candidates_text(module)}")


def load_inputs_factory(ref: str) -> Callable[..., Any]:
    """The input factory a code reference names: ``make_inputs(batch, input_shape, dtype, device)``, checked
    and wrapped (see :mod:`archbench.catalog.input_factory`)."""
    from archbench.catalog.input_factory import FORM, RETURNS, input_factory

    obj, module = load_object(ref)
    if not callable(obj):
        raise ModelReferenceError(f"{quoted(ref, PATH_ECHO_LIMIT)} is {_a(type(obj).__name__)}, not an input factory: expected a function "
                                  f"{FORM} returning {RETURNS}.")
    return input_factory(obj, ref, source_roots(ref))


def load_object(ref: str) -> tuple[Any, types.ModuleType]:
    """Import the module or file of a code reference and return the object it names, and its module."""
    reference = parse_reference(ref)
    if not reference.is_code:
        raise ModelReferenceError(f"{quoted(ref, PATH_ECHO_LIMIT)} does not name Python code: expected module:attr or PATH.py:attr.")
    module = _import_file(Path(reference.target)) if reference.kind == "file" else _import_module(reference.target)
    where = reference.target
    if not reference.attr:
        raise ModelReferenceError(f"{quoted(ref, PATH_ECHO_LIMIT)} names no attribute: write {where}:ATTR.{_candidates_text(module)}")
    obj: Any = module
    for part in reference.attr.split("."):
        if not hasattr(obj, part):
            raise ModelReferenceError(f"{quoted(ref, PATH_ECHO_LIMIT)}: {where} has no attribute {quoted(reference.attr)}."
                                      f"{_did_you_mean(reference.attr, module)}{_candidates_text(module)}")
        obj = getattr(obj, part)
    return obj, module


def _import_module(name: str) -> types.ModuleType:
    _current_directory_importable()
    importlib.invalidate_caches()  # a module written since the interpreter started is found
    roots = _package_roots(name)
    try:
        with exits_as_failures(f"importing {quoted(name)}"):
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ModelReferenceError(
                f"cannot import module {quoted(name)}: no module named {quoted(exc.name)} in the current directory "
                f"({os.getcwd()}) or on the Python path. Run from the directory that holds it, install it, or "
                "name the file instead (./path/to/file.py:attr).") from None
        raise UserCodeError(f"{locate(exc, roots)}: importing {quoted(name)} failed: it imports {quoted(exc.name)}, which is "
                            f"not installed ({one_line(exc)}).") from exc
    except Exception as exc:  # noqa: BLE001 - the user's module failed at import: say where and why
        raise UserCodeError(f"{locate(exc, roots)}: importing {quoted(name)} failed: {one_line(exc)}") from exc


def _current_directory_importable() -> None:
    """As for ``python -m``: modules in the working directory are importable."""
    cwd = os.getcwd()
    if not any(entry in ("", ".") or os.path.abspath(entry) == cwd for entry in sys.path):
        sys.path.insert(0, cwd)


def _import_file(path: Path) -> types.ModuleType:
    """Load a Python file as a module (once per path; its directory goes on ``sys.path``, as for
    ``python file.py``, so it can import its neighbours)."""
    if not path.exists():
        raise ModelReferenceError(f"no such file: {quoted(path, PATH_ECHO_LIMIT)} (from the current directory {os.getcwd()}).")
    if not path.is_file() or path.suffix != ".py":
        raise ModelReferenceError(f"{quoted(path)} is not a Python file: a file reference is PATH.py:attr.")
    resolved = path.resolve()
    stem = re.sub(r"\W", "_", resolved.stem)
    name = f"{FILE_MODULE_PREFIX}{stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
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
            raise UserCodeError(f"{locate(exc, (resolved,))}: loading {path} failed: it imports "
                                f"{quoted(exc.name)}, which is not installed ({one_line(exc)}).") from exc
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
