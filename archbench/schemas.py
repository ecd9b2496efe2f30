"""What archbench reads back, checked where it is read: one schema per kind of record, so a well-formed
file of the wrong shape (``[]`` for a report, a ``null`` batch, a sample blob cut short) is an error naming
the file, the field and what was expected — never a ``TypeError`` deep in a renderer (no torch import).

Records and their readers:

* :data:`RESULT_ROW` — a timing cell (:class:`~archbench.results.ResultRow`, its fields and their types are
  the schema): a ``results.json`` row, a results CSV line (after its text is parsed), a row of the store.
* :data:`MODEL_STATS`, :data:`MODEL_INFO`, :data:`STUDY`, :data:`ENVIRONMENT` and :data:`REPORT`, the whole
  of ``results.json`` (also the report a compare run keeps in the store).
* :data:`RUN` — a run of the results store; :func:`sample_blob` its raw samples.

:func:`validate` applies a schema and raises the caller's :class:`~archbench.errors.ArchbenchError`;
:func:`read_json_file` and :func:`read_text_file` read a file with every way reading can fail said the same
way (missing, unreadable, not UTF-8, not JSON, nested too deeply for Python's parser).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from archbench.errors import ArchbenchError, UsageError
from archbench.parsing import parse_input
from archbench.results import DTYPES, MODES, STATUSES, ModelStats, ResultRow

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


RESULT_ROW = dataclass_record(ResultRow, {
    "model": text(non_empty=True),
    "device": text(non_empty=True),
    "mode": choice(MODES),
    "batch": integer(1),
    "input": input_shape(),
    "dtype": choice(DTYPES),
    "status": choice(STATUSES),
}, "a result row (an object of model, device, mode, batch, input, dtype, status, ...)")

MODEL_STATS = dataclass_record(ModelStats, {
    "model": text(non_empty=True),
    "input": input_shape(),
    "batch": integer(1),
}, "a model's counts (an object of model, input, batch, params_total, macs, ...)")

MODEL_INFO = record({
    "name": Field(text(non_empty=True)),
    "family": Field(text(), False, ""),
    "description": Field(text(), False, ""),
    "input": Field(text(), False, ""),
}, what="a model (an object of name, family, description, input)")

_GRID_VALUES = {
    "inputs": list_of(input_shape(), non_empty=True),
    "batches": list_of(integer(1), non_empty=True),
    "modes": list_of(choice(MODES), non_empty=True),
    "dtypes": list_of(choice(DTYPES), non_empty=True),
}

STUDY = record({
    "name": Field(text(non_empty=True)),
    "title": Field(text(), False, ""),
    "models": Field(list_of(text(non_empty=True), non_empty=True)),
    "reference": Field(text(), False, ""),
    "path": Field(optional(text()), False, None),
    "grid": Field(record({
        "devices": Field(list_of(text(non_empty=True), non_empty=True)),
        "inputs": Field(optional(_GRID_VALUES["inputs"]), False, None),
        **{name: Field(check) for name, check in _GRID_VALUES.items() if name != "inputs"},
        "per_device": Field(mapping_of(record({name: Field(check, False, OMIT) for name, check in _GRID_VALUES.items()},
                                              what="a device's grid values (an object of inputs, batches, modes, dtypes)")),
                            False, {}),
    }, what="a grid (an object of devices, inputs, batches, modes, dtypes)")),
    "options": Field(record({
        "max_time_s": Field(optional(number(nullable=False, minimum=0)), False, OMIT),
        "precision": Field(fraction(), False, OMIT),
        "min_samples": Field(integer(1), False, OMIT),
        "channels_last": Field(boolean(), False, OMIT),
        "compiled": Field(boolean(), False, OMIT),
        "threads": Field(optional(integer(1)), False, OMIT),
        "interleave": Field(boolean(), False, OMIT),
    }, what="the measurement options (an object of max_time_s, precision, min_samples, ...)"), False, {}),
    "model_sources": Field(mapping_of(record({
        "model": Field(text(non_empty=True)),
        "args": Field(optional(mapping_of(anything())), False, None),
        "inputs": Field(optional(text()), False, None),
    })), False, {}),
    "executor": Field(mapping_of(anything()), False, {}),
    "targets": Field(mapping_of(mapping_of(anything())), False, {}),
}, what="a study (an object of name, models, grid, options)")

# A fingerprint's values are shown as they are; the keys that reports take apart must have their shape.
ENVIRONMENT = record({
    "devices": Field(optional(mapping_of(anything())), False, None),
    "date": Field(text(), False, ""),
    "worker": Field(optional(text()), False, None),
}, what="an environment (an object of torch, devices, date, ...)")


def _environment() -> Check:
    """An environment object, kept whole (its other keys are free), with :data:`ENVIRONMENT`'s keys checked."""

    def check(value: Any, path: str) -> dict[str, Any]:
        ENVIRONMENT(value, path)
        return dict(value)

    return check


def environment_sessions(value: Any) -> list[dict[str, Any]]:
    """The fingerprints in a bench CSV's ``.env.json`` (one object, or a list with one per session); entries
    of another shape are left out, as an unreadable file is: the file is optional, the CSV reads without it."""
    sessions = value if isinstance(value, list) else [value]
    kept = []
    for session in sessions:
        try:
            kept.append(_environment()(session, ""))
        except (SchemaError, RecursionError):
            continue
    return kept


REPORT = record({
    "format": Field(choice(("archbench-report",))),
    "format_version": Field(integer(1), False, 1),
    "study": Field(STUDY),
    "command": Field(text(), False, ""),
    "date": Field(text(), False, ""),
    "planned_cells": Field(integer(0), False, 0),
    "environments": Field(list_of(_environment()), False, []),
    "peaks_tflops": Field(mapping_of(number()), False, {}),
    "models": Field(list_of(MODEL_INFO), False, []),
    "model_stats": Field(list_of(MODEL_STATS), False, []),
    "model_stats_errors": Field(list_of(record({
        "model": Field(text()), "input": Field(text()), "error": Field(text())})), False, []),
    "rows": Field(list_of(RESULT_ROW), False, []),
}, what="an archbench report (an object with \"format\": \"archbench-report\")")

RUN = record({  # a row of the store's runs table, its env JSON parsed
    "id": Field(integer(1)),
    "started_utc": Field(text()),
    "finished_utc": Field(optional(text())),
    "command": Field(text()),
    "title": Field(optional(text())),
    "out_path": Field(optional(text())),
    "planned_cells": Field(optional(integer(0))),
    "env": Field(_environment()),
    "git_commit": Field(optional(text())),
}, what="a run")


PEAK = record({
    "device": Field(text(non_empty=True)),
    "dtype": Field(text(non_empty=True)),
    "threads": Field(integer(0)),
    "tflops": Field(number()),
}, what="a device peak")


def _cell_key() -> Check:
    """A cell's key as a shard records it: the nine :class:`~archbench.results.CellKey` values in order."""
    from archbench.results import KEY_FIELDS

    def check(value: Any, path: str) -> list:
        if not isinstance(value, list) or len(value) != len(KEY_FIELDS):
            raise SchemaError(path, f"a cell key (a list of {', '.join(KEY_FIELDS)})", value)
        RESULT_ROW(dict(zip(KEY_FIELDS, value)), path)
        return value

    return check


_SHARD_RECORDS = {
    "start": record({"env": Field(_environment())}, what="a worker's start"),
    "started": record({"key": Field(_cell_key())}, what="a cell's start"),
    "peak": PEAK,
    "row": record({"row": Field(RESULT_ROW)}, what="a measured row"),
    "end": record({"interrupted": Field(anything(), False, False)}, what="a worker's end"),
    "warning": record({"message": Field(text())}, what="a warning"),
}


def shard_record(value: Any, path: str) -> Any:
    """One line of a worker's shard (``*.shard.jsonl``), checked by its ``kind`` (kinds this archbench does
    not know pass as they are); returned as written."""
    if not isinstance(value, dict):
        raise SchemaError(path, "a shard record (an object with a \"kind\")", value)
    check = _SHARD_RECORDS.get(value.get("kind"))
    if check is not None:
        check(value, path)
    return value


JOB_MANIFEST = record({  # the Slurm jobs a detached run submitted (``shards/manifest.json``)
    "jobs": Field(list_of(record({
        "job_id": Field(anything()),
        "unit": Field(text()),  # the unit file the job runs
        "keys": Field(list_of(list_of(anything()))),  # the cell keys it holds
    }, what="a job (an object with its job_id, unit and keys)"))),
}, what="a job manifest (an object with its \"jobs\")")


def sample_blob(value: Any, path: str) -> bytes:
    """A cell's raw samples as stored: float64 values, so a multiple of 8 bytes (``None``: no samples)."""
    if value is None:
        return b""
    if not isinstance(value, bytes) or len(value) % 8:
        got = f"{len(value):,} bytes" if isinstance(value, bytes) else f"a {type(value).__name__}"
        raise SchemaError(path, "float64 samples (a multiple of 8 bytes)", value, got=got)
    return value


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


def read_text_file(path: str | Path, what: str, error: type[ArchbenchError] = UsageError) -> str:
    """The text of ``path`` (UTF-8); ``error`` names the file and why it cannot be read as text."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start:,}): expected {what}.") from None
    except IsADirectoryError:
        raise error(f"{path}: a folder: expected {what}.") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc}): expected {what}.") from None


def read_json_file(path: str | Path, what: str, error: type[ArchbenchError] = UsageError) -> Any:
    """The JSON value in ``path``; ``error`` names the file and why it is not readable JSON."""
    return parse_json(read_text_file(path, what, error), str(path), what, error)


def parse_json(content: str, where: str, what: str, error: type[ArchbenchError] = UsageError) -> Any:
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc}): expected {what}.") from None
    except RecursionError:
        raise error(f"{where}: nested too deeply for Python's JSON parser: expected {what}.") from None
    return check_nesting(value, where, what, error)


MAX_NESTING = 32  # levels of lists/tables in a file archbench reads; its own files nest 5 at most


def check_nesting(value: Any, where: str, what: str, error: type[ArchbenchError] = UsageError) -> Any:
    """``value`` (parsed JSON or TOML), or ``error`` when its lists and tables nest deeper than
    :data:`MAX_NESTING` — deeper data would overflow Python's stack wherever it is walked (rendered,
    compared, written back), far from the file that held it."""
    level = [(value, 1)]
    while level:
        item, depth = level.pop()
        if depth > MAX_NESTING:
            raise error(f"{where}: nested more than {MAX_NESTING} levels deep: expected {what} (archbench's nest a few "
                        "levels at most).")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        level.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


def csv_header(path: str | Path) -> list[str]:
    """The column names of a CSV file: its first record (``[]`` when it has none, or the text is not CSV;
    bytes that are not UTF-8 are replaced, so a binary file reads as a header of no known column)."""
    try:
        with Path(path).open(newline="", encoding="utf-8", errors="replace") as fh:
            return next(csv.reader(fh), [])
    except csv.Error:  # e.g. a "field" longer than the csv module's limit
        return []
