"""Checks of the Python API's arguments (:mod:`archbench.api`): each public function checks what it was
given before anything runs, and a wrong type or value is an :class:`ArgumentError` naming the argument,
what was expected and what was given — never an internal ``TypeError``/``KeyError`` from deep inside.

Each check returns the value normalised (a tuple for a sequence, a ``Path`` for a location). No torch.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from archbench.errors import ArchbenchError
from archbench.rows import DTYPES, MODES

_SHOWN = 60  # characters of a bad value quoted in a message
MAX_INTEGER = 2**63 - 1  # torch's sizes, SQLite's integers


class ArgumentError(ArchbenchError, ValueError):
    """An argument of a Python API function with a wrong value (also a ``ValueError``); ``argument`` names
    it and ``expected`` says what it may be, so that a front end can say the same of its own option."""

    argument: str = ""
    expected: str = ""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of a Python API function of a wrong type (also a ``TypeError``)."""


def shown(value: Any) -> str:
    """``value`` as a message quotes it: its type and a short repr."""
    text = repr(value)
    text = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    return f"{type(value).__name__} {text}" if not isinstance(value, (str, type(None))) else text


def _naming(error: ArgumentError, name: str, expected: str) -> Any:
    error.argument, error.expected = name, expected  # attributes, not arguments: the error still pickles
    return error


def type_error(name: str, expected: str, value: Any) -> ArgumentTypeError:
    return _naming(ArgumentTypeError(f"argument {name}: expected {expected}, got {shown(value)}."), name, expected)


def value_error(name: str, expected: str, value: Any) -> ArgumentError:
    return _naming(ArgumentError(f"argument {name}: expected {expected}, got {shown(value)}."), name, expected)


def out_of_range(name: str, expected: str, value: Any) -> ArgumentError:
    """A value of the right type outside its range: ``argument precision: 5 is not a fraction ...``."""
    return _naming(ArgumentError(f"argument {name}: {value!r} is not {expected}."), name, expected)


# ------------------------------------------------------------------------------------------ scalars


def integer(value: Any, name: str, *, minimum: int = 1, what: str = "a positive integer") -> int:
    """An ``int`` (or anything with ``__index__``, not a bool) of at least ``minimum``."""
    if isinstance(value, bool):
        raise type_error(name, what, value)
    try:
        number = operator.index(value)
    except TypeError:
        raise type_error(name, what, value) from None
    if number < minimum:
        raise value_error(name, what, value)
    if number > MAX_INTEGER:
        raise value_error(name, f"{what} below 2**63 (torch's sizes and counts are 64-bit)", value)
    return number


def number(value: Any, name: str, what: str) -> float:
    """A real number (an ``int`` or ``float``, not a bool, not NaN); its range is the caller's to check."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise type_error(name, what, value)
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        raise type_error(name, what, value) from None
    if result != result:  # NaN
        raise value_error(name, what, value)
    return result


def optional_integer(value: Any, name: str, *, minimum: int = 1, what: str = "a positive integer or None") -> int | None:
    return None if value is None else integer(value, name, minimum=minimum, what=what)


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise type_error(name, "True or False", value)
    return value


def text(value: Any, name: str, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise type_error(name, "a string", value)
    if not empty and not value.strip():
        raise value_error(name, "a non-empty string", value)
    return value


def optional_text(value: Any, name: str) -> str | None:
    return None if value is None else text(value, name, empty=False)


def choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    expected = f"one of {', '.join(repr(a) for a in allowed)}"
    if not isinstance(value, str):
        raise type_error(name, expected, value)
    if value not in allowed:
        raise value_error(name, expected, value)
    return value


def dtype(value: Any, name: str = "dtype") -> str:
    return choice(value, name, DTYPES)


def device(value: Any, name: str = "device") -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (whether the GPU is there is checked where it is used)."""
    from archbench.parsing import parse_device

    expected = "a device name: 'cpu', 'cuda' or 'cuda:N'"
    if not isinstance(value, str):
        raise type_error(name, expected, value)
    try:
        return parse_device(value, name)
    except ArchbenchError:
        raise value_error(name, expected, value) from None


def function(value: Any, name: str, what: str = "a callable") -> Any:
    if not callable(value):
        raise type_error(name, what, value)
    return value


def optional_function(value: Any, name: str, what: str = "a callable or None") -> Any:
    return None if value is None else function(value, name, what)


def instance(value: Any, name: str, cls: type, what: str) -> Any:
    if not isinstance(value, cls):
        raise type_error(name, what, value)
    return value


def location(value: Any, name: str) -> Path | None:
    """``None`` or a non-empty path (a ``str`` or ``os.PathLike``): ``""`` would mean the working directory."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise type_error(name, "a path (str or pathlib.Path) or None", value)
    raw = os.fspath(value)
    if not isinstance(raw, str) or not raw.strip():
        raise value_error(name, "a non-empty path (or None for the default)", value)
    if "\0" in raw:
        raise value_error(name, "a path without NUL characters", value)
    return Path(raw)


# ---------------------------------------------------------------------------------------- sequences


def sequence(value: Any, name: str, what: str) -> tuple:
    """A non-empty iterable (not a string, not a mapping) as a tuple."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise type_error(name, what, value)
    items = tuple(value)
    if not items:
        raise value_error(name, what, value)
    return items


def integers(value: Any, name: str, example: str) -> tuple[int, ...]:
    what = f"a non-empty sequence of positive integers, e.g. {name}={example}"
    return tuple(integer(v, f"{name}[{i}]") for i, v in enumerate(sequence(value, name, what)))


def choices(value: Any, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    what = f"a non-empty sequence of {', '.join(repr(a) for a in allowed)}, e.g. {name}={allowed[:1]!r}"
    return tuple(choice(v, f"{name}[{i}]", allowed) for i, v in enumerate(sequence(value, name, what)))


def modes(value: Any, name: str = "modes") -> tuple[str, ...]:
    return choices(value, name, MODES)


def dtypes(value: Any, name: str = "dtypes") -> tuple[str, ...]:
    return choices(value, name, DTYPES)


def devices(value: Any, name: str = "devices") -> tuple[str, ...]:
    what = f"a non-empty sequence of device names, e.g. {name}=('cpu',)"
    return tuple(device(v, f"{name}[{i}]") for i, v in enumerate(sequence(value, name, what)))


def input_shape(value: Any, name: str = "input_size") -> tuple[int, int, int] | None:
    """``None`` or ``(C, H, W)``: three positive integers (a ``CxHxW`` string is read too)."""
    if value is None:
        return None
    what = "(C, H, W): three positive integers, e.g. (3, 224, 224), or None"
    if isinstance(value, str):
        from archbench.parsing import parse_input

        try:
            return parse_input(value, name)
        except ArchbenchError:
            raise value_error(name, what, value) from None
    items = sequence(value, name, what)
    if len(items) != 3:
        raise value_error(name, what, value)
    return tuple(integer(v, f"{name}[{i}]") for i, v in enumerate(items))  # type: ignore[return-value]


def input_shapes(value: Any, name: str = "inputs") -> tuple[tuple[int, int, int], ...] | None:
    if value is None:
        return None
    what = f"a non-empty sequence of (C, H, W) shapes, e.g. {name}=[(3, 32, 32)], or None"
    return tuple(input_shape(v, f"{name}[{i}]") for i, v in enumerate(sequence(value, name, what)))  # type: ignore[misc]




