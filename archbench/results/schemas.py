"""The schemas of what results are read back from: a report (``results.json``, also what a compare run keeps
in the store), a run and a device peak of the store, a cell's raw samples (no torch import). An environment's
is :mod:`archbench.env.environment`'s; a worker's shard records and a job manifest are :mod:`archbench.execute`'s."""

from __future__ import annotations

from typing import Any

from archbench.env.environment import ENVIRONMENT_CHECK
from archbench.rows import MODEL_STATS, RESULT_ROW
from archbench.schemas import (
    Field,
    SchemaError,
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

REPORT = record({
    "format": Field(choice(("archbench-report",))),
    "format_version": Field(integer(1), False, 1),
    "study": Field(STUDY),
    "command": Field(text(), False, ""),
    "date": Field(text(), False, ""),
    "planned_cells": Field(integer(0), False, 0),
    "environments": Field(list_of(ENVIRONMENT_CHECK), False, []),
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
    "env": Field(ENVIRONMENT_CHECK),
    "git_commit": Field(optional(text())),
}, what="a run")


PEAK = record({
    "device": Field(text(non_empty=True)),
    "dtype": Field(text(non_empty=True)),
    "threads": Field(integer(0)),
    "tflops": Field(number()),
}, what="a device peak")


def sample_blob(value: Any, path: str) -> bytes:
    """A cell's raw samples as stored: float64 values, so a multiple of 8 bytes (``None``: no samples)."""
    if value is None:
        return b""
    if not isinstance(value, bytes) or len(value) % 8:
        got = f"{len(value):,} bytes" if isinstance(value, bytes) else f"a {type(value).__name__}"
        raise SchemaError(path, "float64 samples (a multiple of 8 bytes)", value, got=got)
    return value
