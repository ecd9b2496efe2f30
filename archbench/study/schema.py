"""The schema of a study as ``results.json`` stores it (:meth:`~archbench.study.model.Study.to_dict`), for
reading a report back (:mod:`archbench.schemas`)."""

from __future__ import annotations

from archbench.rows import DTYPES, MODES
from archbench.schemas import (
    OMIT,
    Field,
    anything,
    boolean,
    choice,
    fraction,
    input_shape,
    integer,
    list_of,
    mapping_of,
    number,
    optional,
    record,
    text,
)

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
        "max_samples": Field(integer(1), False, OMIT),
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
