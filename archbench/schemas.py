"""The schema toolkit: checks for what archbench reads back, applied where it is read, so a well-formed file
of the wrong shape (``[]`` for a report, a ``null`` batch) is an error naming the file, the field and what
was expected — never a ``TypeError`` deep in a renderer (no torch import).

:func:`validate` applies a schema and raises the caller's :class:`~archbench.errors.ArchbenchError`. The
schemas live beside what they describe: a result row's in :mod:`archbench.rows`, a study's in
:mod:`archbench.study`, the files and store records of results in :mod:`archbench.results.schemas`;
:mod:`archbench.files` reads a file with every way reading can fail said the same way."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from archbench.errors import ArchbenchError, UsageError
from archbench.parsing import parse_input

Check = Callable[[Any, str], Any]  # (value, field path) -> the value as archbench uses it; raises SchemaError
_SHOWN = 60  # characters of a wrong value quoted in a message


class SchemaError(ValueError):
    """A value that does not fit its schema: ``field`` (a path such as ``rows[3].batch``), what was
    ``expected`` and what was found. A ValueError, so that line-by-line readers (the CSV) report it as they
    report any value they cannot parse."""

    def __init__(self, field: str, expected: str, value: Any, *, missing: bool = False, got: str | None = None):
        self.field, self.expected = field, expected
        got = got or ("nothing (the key is missing)" if missing else _shown(value))
        self.detail = f"expected {expected}, got {got}"
        super().__init__(f"{field}: {self.detail}" if field else self.detail)


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str) if _jsonable(value) else repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text):,} characters)"


def _jsonable(value: Any) -> bool:
    return isinstance(value, (int, float, list, dict))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


# ----------------------------------------------------------------------------------------- checks


def integer(minimum: int | None = None, *, what: str = "") -> Check:
    """An integer (not a bool; an integral float such as 8.0 is taken as 8), at least ``minimum``."""
    expected = what or ("an integer" if minimum is None else
                        "a positive integer" if minimum == 1 else f"an integer >= {minimum}")

    def check(value: Any, path: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            raise SchemaError(path, expected, value)
        return value

    return check


def number(*, nullable: bool = True, minimum: float | None = None) -> Check:
    """A number; ``null`` is NaN when ``nullable`` (JSON has no NaN: archbench writes a missing figure as null)."""
    expected = "a number" + (f" > {minimum:g}" if minimum is not None else "") + (" or null" if nullable else "")

    def check(value: Any, path: str) -> float:
        if value is None and nullable:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (minimum is not None and not value > minimum):
            raise SchemaError(path, expected, value)
        return float(value)

    return check


def fraction() -> Check:
    """A number strictly between 0 and 1 (a precision: 0.03 is ±3%)."""

    def check(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise SchemaError(path, "a fraction between 0 and 1", value)
        return float(value)

    return check


def text(*, non_empty: bool = False) -> Check:
    expected = "a non-empty string" if non_empty else "a string"

    def check(value: Any, path: str) -> str:
        if not isinstance(value, str) or (non_empty and not value.strip()):
            raise SchemaError(path, expected, value)
        return value

    return check


def boolean() -> Check:
    def check(value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise SchemaError(path, "true or false", value)
        return value

    return check


def choice(options: tuple[str, ...]) -> Check:
    def check(value: Any, path: str) -> str:
        if value not in options or not isinstance(value, str):
            raise SchemaError(path, f"one of {', '.join(options)}", value)
        return value

    return check


def input_shape() -> Check:
    """``CxHxW`` with three positive integers (``3x32x32``), kept as the string."""

    def check(value: Any, path: str) -> str:
        try:
            parse_input(value if isinstance(value, str) else "", option="input")
        except UsageError:
            raise SchemaError(path, "an input CxHxW of three positive integers (e.g. 3x32x32)", value) from None
        return value

    return check


def optional(inner: Check) -> Check:
    """``null`` (kept as ``None``) or what ``inner`` accepts."""

    def check(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return check


def anything() -> Check:
    return lambda value, path: value


def list_of(item: Check, *, non_empty: bool = False) -> Check:
    def check(value: Any, path: str) -> list:
        if not isinstance(value, list) or (non_empty and not value):
            raise SchemaError(path, "a non-empty list" if non_empty else "a list", value)
        return [item(v, _join(path, i)) for i, v in enumerate(value)]

    return check


def mapping_of(item: Check) -> Check:
    """A JSON object with string keys, each value checked by ``item``."""

    def check(value: Any, path: str) -> dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise SchemaError(path, "an object (a table of names to values)", value)
        return {k: item(v, _join(path, k)) for k, v in value.items()}

    return check


OMIT = object()  # a Field default: a missing key stays missing (the reader applies its own default)


@dataclasses.dataclass(frozen=True)
class Field:
    check: Check
    required: bool = True
    default: Any = None


def record(fields: Mapping[str, Field], *, what: str = "an object") -> Check:
    """A JSON object with these fields (a missing optional field takes its default; keys this archbench
    does not know, e.g. from a newer one, are dropped)."""

    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SchemaError(path, what, value)
        out: dict[str, Any] = {}
        for name, spec in fields.items():
            where = _join(path, name)
            if name in value:
                out[name] = spec.check(value[name], where)
            elif spec.required:
                raise SchemaError(where, _expected_of(spec.check, where), None, missing=True)
            elif spec.default is not OMIT:
                out[name] = spec.default
        return out

    return check


def _expected_of(check: Check, path: str) -> str:
    """What ``check`` expects, in its own words (it is asked about a value no check accepts)."""
    try:
        check(_Nothing(), path)
    except SchemaError as exc:
        return exc.expected
    return "a value"


class _Nothing:
    """A value of no JSON type."""


# --------------------------------------------------------------------------------- dataclass schemas


_BY_TYPE: dict[str, Callable[[], Check]] = {
    "str": text,
    "int": lambda: integer(0),
    "float": number,
    "bool": boolean,
    "int | None": lambda: optional(integer(0)),
    "dict[str, int]": lambda: mapping_of(integer(0)),
    "tuple[float, ...]": lambda: list_of(number()),
}


def dataclass_record(cls: type, constraints: Mapping[str, Check], what: str) -> Check:
    """The schema of a result dataclass: each field checked by its annotated type (``constraints`` where a
    field's values are narrower); a field without a default is required. A field of a type this function
    does not know fails at import, so a new field cannot go unchecked."""
    fields = {}
    for f in dataclasses.fields(cls):
        if f.name in constraints:
            check = constraints[f.name]
        elif f.type in _BY_TYPE:
            check = _BY_TYPE[f.type]()
        else:
            raise TypeError(f"archbench.schemas: no check for {cls.__name__}.{f.name}: {f.type}")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields[f.name] = Field(check, required, None if required else default)
    return record(fields, what=what)


# ------------------------------------------------------------------------------------------ applying


def validate(schema: Check, value: Any, where: str, error: type[ArchbenchError] = UsageError, field: str = "") -> Any:
    """``value`` checked by ``schema``; else ``error`` naming ``where`` (the file, or the store and run),
    the field and what was expected."""
    try:
        return schema(value, field)
    except SchemaError as exc:
        raise error(f"{where}: {exc}.") from None
    except RecursionError:
        raise error(f"{where}: nested too deeply to be archbench's.") from None
