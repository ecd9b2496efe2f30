"""The schemas of what results are read back from: a report (``results.json``, also what a compare run keeps
in the store), an environment fingerprint, a run and a device peak of the store, a cell's raw samples, a
worker's shard records and a detached run's job manifest (no torch import)."""

from __future__ import annotations

from typing import Any

from archbench.rows import KEY_FIELDS, MODEL_STATS, RESULT_ROW
from archbench.schemas import (
    Check,
    Field,
    SchemaError,
    anything,
    choice,
    integer,
    list_of,
    mapping_of,
    number,
    optional,
    record,
    text,
)
from archbench.study import STUDY

MODEL_INFO = record({
    "name": Field(text(non_empty=True)),
    "family": Field(text(), False, ""),
    "description": Field(text(), False, ""),
    "input": Field(text(), False, ""),
}, what="a model (an object of name, family, description, input)")

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
    """A cell's key as a shard records it: the nine :class:`~archbench.rows.CellKey` values in order."""
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
