"""Parsers for command-line values shared by every command (no torch import).

Each parser takes the raw string a user typed and returns a typed value, or raises
:class:`~archbench.errors.UsageError` with a message naming the option, the value and the expected form.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

from archbench.errors import UsageError

InputShape = tuple[int, int, int]

_INPUT_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_input(text: str, option: str = "--input") -> InputShape:
    """Parse ``CxHxW`` (e.g. ``3x64x64``) into ``(C, H, W)``; every dimension must be positive."""
    match = _INPUT_RE.match(str(text))
    if not match:
        raise UsageError(
            f"{option} '{text}' is not an input shape: expected CxHxW with three positive integers, "
            "e.g. 3x64x64 (the batch size is given separately with --batch)."
        )
    shape = tuple(int(g) for g in match.groups())
    if min(shape) <= 0:
        raise UsageError(f"{option} '{text}' has a zero dimension: every one of C, H and W must be at least 1.")
    return shape  # type: ignore[return-value]


def format_input(shape: InputShape | list[int]) -> str:
    """``(3, 64, 64)`` -> ``'3x64x64'``."""
    return "x".join(str(int(d)) for d in shape)


def split_list(text: str) -> list[str]:
    """Split a comma-separated option value, dropping blanks: ``'1, 8,'`` -> ``['1', '8']``."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def parse_inputs(text: str, option: str = "--input") -> list[InputShape]:
    """Parse a comma-separated list of ``CxHxW`` shapes."""
    items = split_list(text)
    if not items:
        raise UsageError(f"{option} is empty: give one or more shapes such as 3x32x32,3x64x64.")
    return _unique([parse_input(item, option) for item in items])


def parse_positive_ints(text: str, option: str) -> list[int]:
    """Parse a comma-separated list of positive integers (e.g. ``--batch 1,8,32``)."""
    items = split_list(text)
    if not items:
        raise UsageError(f"{option} is empty: give one or more positive integers such as 1,8,32.")
    values = []
    for item in items:
        if not re.fullmatch(r"\d+", item) or int(item) <= 0:
            raise UsageError(f"{option} value '{item}' is not a positive integer: expected e.g. {option} 1,8,32.")
        values.append(int(item))
    return _unique(values)


def parse_choices(text: str, option: str, choices: tuple[str, ...]) -> list[str]:
    """Parse a comma-separated list whose items must each be one of ``choices``."""
    items = split_list(text)
    if not items:
        raise UsageError(f"{option} is empty: choose from {', '.join(choices)}.")
    for item in items:
        if item not in choices:
            raise UsageError(f"{option} value '{item}' is not one of: {', '.join(choices)}.")
    return _unique(items)


def read_toml_file(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The table of a TOML file (a spec or a study file); ``error`` names the file, and the line of a
    syntax error."""
    from archbench.schemas import check_nesting, read_text_file  # (schemas imports this module)

    try:
        return check_nesting(tomllib.loads(read_text_file(path, f"a {what}", error)), str(path), f"a {what}", error)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}. Fix the syntax at that line.") from exc
    except RecursionError:
        raise error(f"{path}: nested too deeply for Python's TOML parser: expected a {what}.") from None


def parse_toml_value(text: str) -> Any:
    """Parse a TOML literal (``10``, ``0.3``, ``true``, ``[3, 4, 6, 3]``, ``"relu"``).

    A bare word that is not a TOML literal (``relu``) is taken as a string, so users need not quote it;
    the family's argument types then decide whether the value is acceptable.
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Parse repeated ``--set key=value`` options into a dict (values are TOML literals)."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise UsageError(
                f"--set '{item}' is not of the form key=value: e.g. --set widen_factor=8 or "
                "--set 'blocks=[3,4,6,3]'."
            )
        overrides[key] = parse_toml_value(value.strip())
    return overrides


def _unique(values: list) -> list:
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def parse_fraction(text: str, option: str) -> float:
    """A fraction strictly between 0 and 1 (``--precision 0.02`` means ±2%)."""
    value = _float_or_nan(text)
    if not 0 < value < 1:
        raise UsageError(f"{option} '{text}' is not a fraction between 0 and 1: e.g. {option} 0.02 for ±2%.")
    return value


MAX_SECONDS = 86_400.0  # one day per cell: anything longer is a typo (1e99), not a budget


def parse_seconds(text: str, option: str) -> float:
    """A positive number of seconds, at most :data:`MAX_SECONDS`."""
    value = _float_or_nan(text)
    if not 0 < value <= MAX_SECONDS:
        raise UsageError(f"{option} '{text}' is not a number of seconds between 0 and {MAX_SECONDS:,.0f} (a day): "
                         f"e.g. {option} 10.")
    return value
