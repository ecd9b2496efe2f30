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

from archbench.errors import UsageError, quoted

InputShape = tuple[int, int, int]

# The integer layer. Every integer a user types goes through :func:`parse_int`: digits 0-9 only (a
# non-ASCII digit such as '３' or '٣', which Python's int() would accept, is refused with a message naming
# it), surrounding whitespace ignored, and a bound that the value's destination can hold: the results
# store and torch's sizes are signed 64-bit, torch's thread count a C int.
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
_ELEMENT_BYTES_MAX = 8  # the widest element archbench builds inputs of (fp64 when asked; fp32 usually)
_SHAPE_SEPARATORS = re.compile(r"[xX×]")


def _non_ascii_digit(text: str) -> str | None:
    """The first character of ``text`` that is a digit but not 0-9, or None."""
    return next((ch for ch in text if ch.isdigit() and not ("0" <= ch <= "9")), None)


def _number_text(text: object, option: str) -> str:
    """``text`` without surrounding whitespace, refused if it holds a non-ASCII digit."""
    item = str(text).strip()
    digit = _non_ascii_digit(item)
    if digit is not None:
        raise UsageError(f"{option} value {quoted(item)} contains the non-ASCII digit {quoted(digit)} (U+{ord(digit):04X}): "
                         "write numbers with the digits 0-9.")
    return item


def parse_int(text: object, option: str, *, minimum: int = 1, maximum: int = INT64_MAX, example: str = "") -> int:
    """One whole number between ``minimum`` and ``maximum`` (inclusive), written with the digits 0-9."""
    item = _number_text(text, option)
    example = example or f"{option} {max(minimum, 1)}"
    if not re.fullmatch(r"[0-9]+", item):
        kind = "a positive integer" if minimum == 1 else "a whole number"
        raise UsageError(f"{option} value {quoted(item)} is not {kind}: expected e.g. {example}.")
    value = int(item) if len(item.lstrip("0")) <= len(str(maximum)) else maximum + 1  # int() refuses 4,300+ digits
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"at least {minimum}"
        raise UsageError(f"{option} value {quoted(item)} is not {kind}: expected e.g. {example}.")
    if value > maximum:
        raise UsageError(f"{option} value {quoted(item)} is too large: at most {maximum:,}{_bound_name(maximum)}.")
    return value


def _bound_name(maximum: int) -> str:
    return {INT64_MAX: " (2**63 - 1, a 64-bit integer)", INT32_MAX: " (2**31 - 1)"}.get(maximum, "")


def parse_input(text: str, option: str = "--input") -> InputShape:
    """Parse ``CxHxW`` (e.g. ``3x64x64``) into ``(C, H, W)``; every dimension must be positive, and one input
    of the widest element type must fit in a 64-bit size."""
    parts = [part.strip() for part in _SHAPE_SEPARATORS.split(_number_text(text, option))]
    if len(parts) != 3 or not all(re.fullmatch(r"[0-9]+", part) for part in parts):
        raise UsageError(
            f"{option} {quoted(str(text).strip())} is not an input shape: expected CxHxW with three positive integers, "
            "e.g. 3x64x64 (the batch size is given separately with --batch)."
        )
    shape = tuple(int(part) for part in parts)
    if min(shape) <= 0:
        raise UsageError(f"{option} {quoted(str(text).strip())} has a zero dimension: every one of C, H and W must be "
                         "at least 1.")
    if math.prod(shape) * _ELEMENT_BYTES_MAX > INT64_MAX:
        raise UsageError(f"{option} {quoted(str(text).strip())} is too large: C×H×W is {math.prod(shape):,} elements; "
                         f"at most {INT64_MAX // _ELEMENT_BYTES_MAX:,} fit in a 64-bit size.")
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


def parse_positive_ints(text: str, option: str, maximum: int = INT64_MAX) -> list[int]:
    """Parse a comma-separated list of positive integers (e.g. ``--batch 1,8,32``), each at most ``maximum``."""
    items = split_list(text)
    if not items:
        raise UsageError(f"{option} is empty: give one or more positive integers such as 1,8,32.")
    return _unique([parse_int(item, option, maximum=maximum, example=f"{option} 1,8,32") for item in items])


def parse_choices(text: str, option: str, choices: tuple[str, ...]) -> list[str]:
    """Parse a comma-separated list whose items must each be one of ``choices``."""
    items = split_list(text)
    if not items:
        raise UsageError(f"{option} is empty: choose from {', '.join(choices)}.")
    for item in items:
        if item not in choices:
            raise UsageError(f"{option} value {quoted(item)} is not one of: {', '.join(choices)}.")
    return _unique(items)


def read_toml_file(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The table of a TOML file (a spec or a study file); ``error`` names the file, and the line of a
    syntax error."""
    from archbench.files import check_nesting, read_text_file  # (schemas imports this module)

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
                f"--set {quoted(item)} is not of the form key=value: e.g. --set widen_factor=8 or "
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


def _float_or_nan(text: str, option: str) -> float:
    """A decimal number as typed (0-9 digits, surrounding whitespace ignored); NaN when it is not one."""
    item = _number_text(text, option)
    if not re.fullmatch(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", item):
        return math.nan  # float() would also take '1_0', 'nan' and 'infinity'
    return float(item)


def parse_number(text: str, option: str) -> float:
    """A decimal number as typed, its range unchecked (the option's own check says what it may be); NaN when
    it is not one."""
    return _float_or_nan(text, option)


def parse_fraction(text: str, option: str) -> float:
    """A fraction strictly between 0 and 1 (``--precision 0.02`` means ±2%)."""
    value = _float_or_nan(text, option)
    if not 0 < value < 1:
        raise UsageError(f"{option} {quoted(str(text).strip())} is not a fraction between 0 and 1: e.g. {option} 0.02 "
                         "for ±2%.")
    return value


MAX_SECONDS = 86_400.0  # one day per cell: anything longer is a typo (1e99), not a budget


def parse_seconds(text: str, option: str) -> float:
    """A positive number of seconds, at most :data:`MAX_SECONDS`."""
    value = _float_or_nan(text, option)
    if not 0 < value <= MAX_SECONDS:
        raise UsageError(f"{option} {quoted(str(text).strip())} is not a number of seconds between 0 and "
                         f"{MAX_SECONDS:,.0f} (a day): e.g. {option} 10.")
    return value


MAX_BATCH = "max"  # --batch max: the largest batch that fits (archbench.sweep.maxbatch)


def parse_batches(text: str, option: str = "--batch") -> list[int | str]:
    """Batch sizes, each a positive integer or ``max`` (the largest that fits): ``--batch 1,8,max``."""
    items = split_list(text)
    if not items:
        raise UsageError(f"{option} is empty: give one or more batch sizes such as 1,8,32, or max.")
    values: list[int | str] = []
    for item in items:
        if item.lower() == MAX_BATCH:
            values.append(MAX_BATCH)
        elif item.isdigit():  # any digits: the one integer parser refuses non-ASCII ones and bounds the value
            values.append(parse_int(item, option, example=f"{option} 1,8,32 or {option} 1,8,max"))
        else:
            raise UsageError(f"{option} value {quoted(item)} is not a positive integer or max: expected e.g. "
                             f"{option} 1,8,32 or {option} 1,8,max.")
    return _unique(values)


_BYTE_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30,
               "t": 2**40, "tib": 2**40, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
MAX_BYTES = 2**60  # an exbibyte: anything larger is a typo, not a memory size


def parse_bytes(text: str, option: str) -> int:
    """A memory size: ``8GiB``, ``512MiB``, ``1.5G`` (K/M/G/T and KiB/MiB/GiB/TiB are binary, KB/MB/GB/TB decimal,
    a bare number is bytes); positive and at most 2**60."""
    match = _BYTES_RE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _BYTE_UNITS:
        raise UsageError(f"{option} {quoted(text)} is not a memory size: expected a number and a unit, e.g. {option} 8GiB "
                         "or 512MiB (KiB/MiB/GiB/TiB binary, KB/MB/GB/TB decimal).")
    value = round(float(match.group(1)) * _BYTE_UNITS[unit])
    if not 0 < value <= MAX_BYTES:
        raise UsageError(f"{option} {quoted(text)} is not a memory size between 1 byte and 1 EiB.")
    return value


_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(.*))?$")


def parse_device(text: str, option: str = "--device") -> str:
    """One device name, normalised (``cuda:01`` -> ``cuda:1``); syntax only, no availability check."""
    match = _DEVICE_RE.match(str(text).strip())
    if not match or (match.group(1) == "cpu" and match.group(2) is not None) or (
            match.group(2) is not None and not match.group(2).isdigit()):
        raise UsageError(f"{option} value {quoted(str(text).strip())} is not a device: expected cpu, cuda or cuda:N "
                         "(e.g. cuda:1), or auto.")
    kind, index = match.groups()
    if index is None:
        return kind
    return f"{kind}:{parse_int(index, f'{option} {kind}:N', minimum=0, maximum=INT32_MAX, example=f'{option} cuda:1')}"
