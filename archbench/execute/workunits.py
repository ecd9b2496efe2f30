"""Cells as self-contained work units, and the result shards that measuring them writes (no torch import).

A :class:`WorkUnit` is a batch of planned cells with everything a fresh process needs to measure them: each
cell's :class:`~archbench.rows.CellKey`, its model as data (a :class:`~archbench.catalog.spec.ModelSpec`
serialised field by field, so neither the spec folders nor the original command are needed to rebuild it),
the :class:`~archbench.timing.options.MeasureOptions`, the interleaving reference, the device peaks the run already
holds, and where the process runs (working directory, cores to pin to). It is one JSON file.

Measuring it (``archbench run-cells FILE``, :func:`archbench.execute.executors.run_work_unit`) appends to the
unit's *shard*, a JSON-lines file beside it: one record per line, each written whole and fsynced, so a
process killed at any moment leaves every finished cell readable::

    {"kind": "start", "env": {...}, "pid": 123, "affinity": [0], "host": "node1", "job": "4711"}
    {"kind": "started", "key": [...]}        # the cell being measured now
    {"kind": "peak", "device": "cpu", "dtype": "fp32", "threads": 1, "tflops": 0.21}
    {"kind": "row", "row": {...ResultRow fields, samples_ms included...}}
    {"kind": "end", "interrupted": false}

Measuring a unit again skips the cells its shard already holds (idempotent), so a requeued job or a resumed
run re-measures nothing that finished.

A device may carry a target label, ``cpu@a``: the cell is measured on ``cpu`` and its row is labelled
``cpu@a`` (the cells of one study measured on several targets — partitions, GPU types, machines — stay
apart in the results and the report, with no new column).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.catalog.spec import model_from_json, model_to_json
from archbench.env.environment import ENVIRONMENT_CHECK
from archbench.errors import PATH_ECHO_LIMIT, WorkUnitError, quoted
from archbench.files import atomic_write_text
from archbench.parsing import parse_input
from archbench.results.schemas import PEAK
from archbench.rows import KEY_FIELDS, RESULT_ROW, CellKey, ResultRow, cell_key, row_from_json
from archbench.schemas import Check, Field, SchemaError, anything, text, validate
from archbench.schemas import record as object_of
from archbench.sweep.cells import split_target
from archbench.timing.options import MeasureOptions, WarmupPolicy

FORMAT = "archbench-work-unit/1"


# -------------------------------------------------------------------------------------------- models


# --------------------------------------------------------------------------------------------- cells


def cell_to_json(cell: Any, model_index: int) -> dict[str, Any]:
    """A cell's key and model; a batch ``max`` found also how (its row says so, wherever it is measured)."""
    if getattr(cell, "search", None) is None:
        return {"key": list(cell.key()), "model": model_index}
    from archbench.sweep.maxbatch import search_to_json

    return {"key": list(cell.key()), "model": model_index, "search": search_to_json(cell.search)}


@dataclass(frozen=True)
class WorkUnit:
    """Cells to measure in one process. ``models`` as :func:`model_to_json` data, each cell its key and the
    index of its model; ``cpus``: the cores to pin to (None: as started); ``known_peaks``: ``[device, dtype,
    threads, tflops]`` the run already measured (a resumed run keeps its ceiling)."""

    cells: tuple[Mapping[str, Any], ...]
    models: tuple[Mapping[str, Any], ...]
    options: Mapping[str, Any] = field(hash=False)
    interleave: str | None = None  # the reference model of interleaved rounds (None: each cell on its own)
    cwd: str = "."
    cpus: tuple[int, ...] | None = None
    known_peaks: tuple[tuple[str, str, int, float], ...] = ()
    label: str = ""  # what the coordinator calls this unit in messages (e.g. "worker 1", "job 4711")

    @property
    def keys(self) -> list[CellKey]:
        return [cell_key(*c["key"]) for c in self.cells]

    def measure_options(self) -> MeasureOptions:
        values = dict(self.options)
        values["warmup"] = WarmupPolicy(**values["warmup"])
        return MeasureOptions(**values)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **{f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def make_work_unit(cells: Sequence[Any], options: MeasureOptions, *, interleave: str | None = None,
                   cpus: Sequence[int] | None = None, known_peaks: Iterable[tuple[str, str, int, float]] = (),
                   label: str = "", cwd: str | Path | None = None) -> WorkUnit:
    """The unit of ``cells`` (planned :class:`~archbench.sweep.cells.Cell` s): raises
    :class:`WorkUnitError` for a model that cannot be rebuilt in another process."""
    sources: dict[Any, int] = {}
    models: list[dict[str, Any]] = []
    encoded = []
    for cell in cells:
        if cell.source not in sources:
            sources[cell.source] = len(models)
            models.append(model_to_json(cell.source))
        encoded.append(cell_to_json(cell, sources[cell.source]))
    return WorkUnit(tuple(encoded), tuple(models), dataclasses.asdict(options), interleave,
                    str(Path(cwd if cwd is not None else os.getcwd()).resolve()),
                    tuple(cpus) if cpus is not None else None, tuple(tuple(p) for p in known_peaks), label)


def check_portable(cells: Iterable[Any]) -> None:
    """Every cell's model can be rebuilt in another process (else :class:`WorkUnitError`, before anything runs)."""
    for source in dict.fromkeys(c.source for c in cells):
        model_to_json(source)


def unit_cells(unit: WorkUnit) -> list[Any]:
    """The unit's cells, each measured on its device without the target label (see :func:`measured_row`)."""
    from archbench.sweep.cells import Cell
    from archbench.sweep.maxbatch import search_from_json

    sources = [model_from_json(m) for m in unit.models]
    cells = []
    for item in unit.cells:
        key = cell_key(*item["key"])
        device, _ = split_target(key.device)
        cells.append(Cell(key.model, sources[item["model"]], device, key.mode, key.batch, parse_input(key.input),
                          key.dtype, key.channels_last, key.compiled, key.threads, search=search_from_json(item.get("search"))))
    return cells


def write_work_unit(path: str | Path, unit: WorkUnit) -> Path:
    return atomic_write_text(path, json.dumps(unit.to_json(), indent=1) + "\n")


def read_work_unit(path: str | Path) -> WorkUnit:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkUnitError(f"cannot read the work unit {quoted(path, PATH_ECHO_LIMIT)}: {exc.strerror or exc}.") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise WorkUnitError(f"{quoted(path, PATH_ECHO_LIMIT)} is not a work unit (not JSON: {exc}).") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise WorkUnitError(f"{quoted(path, PATH_ECHO_LIMIT)} is not an archbench work unit (expected \"format\": "
                            f"\"{FORMAT}\"); work units are written by archbench's executors.")
    try:
        return WorkUnit(cells=tuple(data["cells"]), models=tuple(data["models"]), options=data["options"],
                        interleave=data.get("interleave"), cwd=data.get("cwd", "."),
                        cpus=tuple(data["cpus"]) if data.get("cpus") is not None else None,
                        known_peaks=tuple(tuple(p) for p in data.get("known_peaks") or ()), label=data.get("label", ""))
    except (KeyError, TypeError) as exc:
        raise WorkUnitError(f"{quoted(path, PATH_ECHO_LIMIT)} is not a complete work unit (missing or malformed {exc}).") from None


def shard_path(unit_path: str | Path) -> Path:
    """Where measuring ``unit_path`` (``w1.unit.json``) writes its results (``w1.shard.jsonl``)."""
    unit_path = Path(unit_path)
    return unit_path.with_name(unit_path.name.removesuffix(".unit.json").removesuffix(".json") + ".shard.jsonl")


# -------------------------------------------------------------------------------------------- shards


class ShardWriter:
    """Appends records to a shard, each one line written whole, flushed and fsynced before returning."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_unfinished_line(self.path)

    def write(self, kind: str, **values: Any) -> None:
        line = json.dumps({"kind": kind, **values}) + "\n"  # NaN is null in rows; an unlimited budget is Infinity
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def _cut_unfinished_line(path: Path) -> None:
    """A process killed mid-write leaves a last line without its end: it is cut, so records go on a line of
    their own (what it held was not finished)."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        os.truncate(path, data.rfind(b"\n") + 1)


@dataclass(frozen=True)
class ShardContents:
    """What a shard holds: its rows (the last row of a cell wins), the device peaks its processes measured,
    each start's environment, the cell a process was measuring when the shard ends, and whether the last
    process to write it finished (``ended``)."""

    rows: tuple[ResultRow, ...] = ()
    peaks: tuple[tuple[str, str, int, float], ...] = ()
    starts: tuple[Mapping[str, Any], ...] = ()
    measuring: CellKey | None = None
    ended: bool = False
    interrupted: bool = False

    @property
    def keys(self) -> set[CellKey]:
        return {r.key() for r in self.rows}


def read_shard(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete records of a shard from byte ``offset`` on, and the offset after the last complete line
    (a line still being written is left for the next read)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    complete = data[: data.rfind(b"\n") + 1]
    records = []
    for line in complete.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue  # a line cut by a killed process and then written over: its cell was not finished
        records.append(validate(shard_record, record, f"{path} (the line at byte {offset + complete.find(line):,})",
                                WorkUnitError))
    return records, offset + len(complete)


def shard_contents(records: Iterable[Mapping[str, Any]]) -> ShardContents:
    rows: dict[CellKey, ResultRow] = {}
    peaks: list[tuple[str, str, int, float]] = []
    starts: list[Mapping[str, Any]] = []
    measuring: CellKey | None = None
    ended = interrupted = False
    for record in records:
        kind = record.get("kind")
        if kind == "start":
            starts.append(record)
            measuring, ended = None, False
        elif kind == "started":
            measuring = cell_key(*record["key"])
        elif kind == "peak":
            peaks.append((record["device"], record["dtype"], int(record["threads"]),
                          math.nan if record["tflops"] is None else float(record["tflops"])))
        elif kind == "row":
            row = row_from_json(record["row"])
            rows[row.key()] = row
            measuring = None
        elif kind == "end":
            ended, interrupted, measuring = True, bool(record.get("interrupted")), None
    return ShardContents(tuple(rows.values()), tuple(peaks), tuple(starts), measuring, ended, interrupted)


def measured_row(row: ResultRow, device_label: str) -> ResultRow:
    """A row measured on the bare device, labelled with the planned cell's device (``cpu`` -> ``cpu@a``)."""
    return row if row.device == device_label else dataclasses.replace(row, device=device_label)


def jsonable_peak(device: str, dtype: str, threads: int, tflops: float) -> dict[str, Any]:
    return {"device": device, "dtype": dtype, "threads": int(threads), "tflops": None if math.isnan(tflops) else tflops}


# ----------------------------------------------------------------------------------- shard schema


def _cell_key() -> Check:
    """A cell's key as a shard records it: the nine :class:`~archbench.rows.CellKey` values in order."""
    def check(value: Any, path: str) -> list:
        if not isinstance(value, list) or len(value) != len(KEY_FIELDS):
            raise SchemaError(path, f"a cell key (a list of {', '.join(KEY_FIELDS)})", value)
        RESULT_ROW(dict(zip(KEY_FIELDS, value)), path)
        return value

    return check


_SHARD_RECORDS = {
    "start": object_of({"env": Field(ENVIRONMENT_CHECK)}, what="a worker's start"),
    "started": object_of({"key": Field(_cell_key())}, what="a cell's start"),
    "peak": PEAK,
    "row": object_of({"row": Field(RESULT_ROW)}, what="a measured row"),
    "end": object_of({"interrupted": Field(anything(), False, False)}, what="a worker's end"),
    "warning": object_of({"message": Field(text())}, what="a warning"),
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
