"""Typed results: one frozen dataclass per kind of result, units in the field names (no torch import).

* :class:`ModelStats` — what a model costs at one input and batch: counts and memory (``archbench summary``).
* :class:`ResultRow` — one timing cell of a sweep (the CSV contract read by the report).
* rows <-> CSV (as a pandas DataFrame: :func:`archbench.report.frame.rows_frame`). The CSV reader skips an
  unfinished last line (what a crash while a row was appended leaves) with a warning and refuses any other
  bad line naming ``file:line``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

from archbench.errors import PATH_ECHO_LIMIT, UsageError, quoted
from archbench.files import atomic_path, csv_header
from archbench.schemas import SchemaError, choice, dataclass_record, input_shape, integer, text

Status = Literal["ok", "oom", "error", "unsupported"]  # unsupported: the device cannot run the dtype natively
Mode = Literal["infer", "train"]
DType = Literal["fp32", "bf16", "fp16"]
STATUSES: tuple[str, ...] = get_args(Status)
MODES: tuple[str, ...] = get_args(Mode)
DTYPES: tuple[str, ...] = get_args(DType)
# How a cell runs the model (archbench.timing.backends): a grid axis. ``compile:MODE`` is torch.compile in another
# mode (``compile:max-autotune``); ``compiled`` (the flag of an older archbench, still a column) means "compile*".
BACKENDS: tuple[str, ...] = ("eager", "compile", "export", "onnxruntime")
COMPILE_MODES: tuple[str, ...] = ("default", "max-autotune")


def backend_kind(backend: str) -> str:
    """``compile:max-autotune`` -> ``compile``; any other backend name as is."""
    return str(backend).split(":", 1)[0]


def normal_backend(backend: str, compiled: bool) -> tuple[str, bool]:
    """``(backend, compiled)`` agreeing: a row or key of an older archbench (no backend) is ``compile`` when it
    was ``compiled``, else ``eager``; ``compiled`` is true exactly for the compile backends."""
    backend = str(backend or "").strip() or ("compile" if compiled else "eager")
    return backend, backend_kind(backend) == "compile"


@dataclass(frozen=True)
class ModelStats:
    """Counts and memory of one model at one input and batch.

    MAC/FLOP convention: 1 multiply-accumulate = 1 MAC = 2 FLOPs. ``macs`` is the forward MACs of
    convolutions, matrix products and attention (torchvision's ``_ops`` convention); ``macs_with_norm``
    adds normalisation and pooling with fvcore's formulas (fvcore's and timm's ``infer_gmacs``
    convention); ``other_ops`` counts the remaining arithmetic (activations, elementwise, softmax), one
    operation per element. ``flops_forward`` = 2 x ``macs``; ``flops_backward`` is the FLOPs of a training
    step's backward over the same op set (grouped-convolution weight gradients counted correctly).
    ``uncounted_ops`` lists the ops no formula accounted for (op name -> how often it ran).
    """

    model: str
    input: str  # "3x32x32"
    batch: int
    device: str
    dtype: str
    params_total: int
    params_trainable: int
    buffers: int  # buffer elements (e.g. BatchNorm running statistics)
    param_bytes: int  # parameters + buffers
    macs: int  # forward, at this batch
    flops_forward: int
    flops_backward: int
    activation_bytes: int  # measured: bytes autograd saves for backward at this input and batch
    uncounted_ops: dict[str, int] = field(default_factory=dict, hash=False)
    macs_with_norm: int | None = None  # macs + normalisation and pooling (fvcore's formulas); None: not counted
    other_ops: int | None = None  # activations, elementwise, softmax, one per element; None: not counted
    # (None only in stats stored by an archbench that did not count them yet)
    backward_uncounted_ops: dict[str, int] = field(default_factory=dict, hash=False)  # of the training step

    @property
    def activation_bytes_per_sample(self) -> float:
        return self.activation_bytes / self.batch

    @property
    def macs_flag(self) -> str:
        """``"incomplete: N ops uncounted"`` when the forward ran ops with arithmetic that no formula counts
        (``macs``, ``macs_with_norm`` and ``flops_forward`` leave them out); ``""`` when complete."""
        return incomplete_flag(self.uncounted_ops)

    @property
    def flops_backward_flag(self) -> str:
        """The same for ``flops_backward`` (the training step's backward ops)."""
        return incomplete_flag(self.backward_uncounted_ops)


def incomplete_flag(uncounted_ops: Mapping[str, int]) -> str:
    """``"incomplete: N ops uncounted"`` (N distinct ops) for a count that leaves out ops with arithmetic:
    such a total must never look complete. ``""`` when there are none."""
    count = len(uncounted_ops)
    return f"incomplete: {count} op{'s' if count != 1 else ''} uncounted" if count else ""


@dataclass(frozen=True)
class ResultRow:
    """One measured cell: a model at one device/mode/batch/input/dtype/options point.

    Times are per step (one forward for ``infer``, forward+loss+backward for ``train``). A cell that ran
    out of memory or failed is still a row (``status`` ``oom``/``error`` with ``error``), never a crash.
    """

    model: str
    device: str  # "cpu" | "cuda" (the device name is in the environment fingerprint)
    mode: Mode
    batch: int
    input: str  # "3x32x32"
    dtype: DType
    channels_last: bool = False
    compiled: bool = False  # backend is compile (kept for older readers; see normal_backend)
    threads: int = 0
    backend: str = ""  # eager | compile[:mode] | export | onnxruntime ("": from compiled, as older files have it)
    status: Status = "ok"
    error: str = ""  # why a cell failed (status oom/error/unsupported); empty on ok rows
    n_samples: int = 0
    median_ms: float = math.nan
    iqr_ms: float = math.nan
    ci_low_ms: float = math.nan
    ci_high_ms: float = math.nan
    min_ms: float = math.nan
    samples_per_s: float = math.nan
    flops_per_step: float = math.nan
    achieved_tflops: float = math.nan
    peak_fraction: float = math.nan
    peak_mem_mb: float = math.nan
    noisy: bool = False  # IQR/median > 10%
    stop_reason: str = ""  # why sampling stopped: "precision" (CI within target), "max_time" or "max_samples"
    warmup_iters: int = 0
    ci_coverage: float = math.nan  # the exact coverage of [ci_low_ms, ci_high_ms] (0.9375 with 5 samples)
    under_load: bool = False  # measured while something else loaded the machine (see load_ratio)
    load_ratio: float = math.nan  # calibration kernel time around the cell / the sweep's first calibration
    precision: float = math.nan  # the measurement options the cell ran with (resume refuses other ones)
    max_time_s: float = math.nan
    min_samples: int = 0
    tf32: bool = False  # fp32 on a GPU whose convolutions or matmuls ran as TF32 (shown as "fp32 (tf32)")
    compile_s: float = math.nan  # non-eager backend: seconds building it (compile: the compiling first call; export:
    # torch.export + AOTInductor compile + load; onnxruntime: export + ONNX conversion + session), not in the samples
    max_abs_err: float = math.nan  # non-eager backend, infer: max |output - eager output| on the same input
    max_rel_err: float = math.nan  # max_abs_err / max |eager output| (archbench.timing.backends.output_error)
    note: str = ""  # on ok rows: what a figure leaves out and why (e.g. FLOPs not counted, no % of peak)
    rounds: int = 0  # interleaved rounds the model was timed in (0: measured on its own; archbench.sweep.interleave)
    loaded_rounds: int = 0  # of those, rounds with a burst measured under CPU pressure (archbench.timing.loadsignal)
    paired_ratio: float = math.nan  # interleaved, not the reference: median per-round time ratio model / reference (bursts' fastest)
    paired_ratio_low: float = math.nan  # its distribution-free 95% CI (order statistics of the per-round ratios)
    paired_ratio_high: float = math.nan
    paired_reason: str = ""  # why an interleaved row has no paired ratio: "not comparable (measured under load)"
    max_batch_bound: str = ""  # batch "max": what stopped the search (oom | memory_limit | max_batch); "": batch given
    max_batch_probes: str = ""  # batch "max": the batches the search ran, in order ("64 ok, 128 oom, 96 ok")
    max_batch_predicted: int = 0  # batch "max": the batch the memory estimate predicted (0: none)
    memory_limit_mb: float = math.nan  # batch "max": the memory limit the search ran under (MiB; NaN: the device's)
    samples_ms: tuple[float, ...] = field(default=(), repr=False)  # raw samples (JSON only, not CSV)

    def __post_init__(self) -> None:
        backend, compiled = normal_backend(self.backend, self.compiled)
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "compiled", compiled)

    def key(self) -> CellKey:
        """Identity of the cell, used by ``--resume`` to skip cells already measured."""
        return cell_key(self.model, self.device, self.mode, self.batch, self.input, self.dtype, self.channels_last,
                        self.compiled, self.threads, self.backend)


class CellKey(NamedTuple):
    """The identity of a cell — the one definition, shared by the planned cell, its result row, resume,
    the raw-sample files and the store. A tuple, so it keys dicts and compares with stored keys."""

    model: str
    device: str
    mode: str
    batch: int
    input: str  # "3x32x32"
    dtype: str
    channels_last: bool
    compiled: bool  # backend is compile (redundant with backend; kept so older keys compare)
    threads: int
    backend: str = "eager"

    def label(self) -> str:
        """``resnet-18 infer cpu fp32 b8 3x224x224`` (+ ``channels-last``, the backend, ``threads N``)."""
        extras = [flag for flag, on in (("channels-last", self.channels_last), (self.backend, self.backend != "eager")) if on]
        extras += [f"threads {self.threads}"] if self.threads else []
        return " ".join([self.model, self.mode, self.device, self.dtype, f"b{self.batch}", self.input, *extras])


def cell_key(model: str, device: str, mode: str, batch: int, input: str, dtype: str, channels_last: bool,
             compiled: bool, threads: int, backend: str | None = None) -> CellKey:
    """A :class:`CellKey` with normalised types (a CSV or JSON file gives strings and floats); no ``backend``
    (an older archbench's key) is ``compile`` or ``eager`` by ``compiled``."""
    backend, compiled = normal_backend(backend or "", bool(compiled))
    return CellKey(str(model), str(device), str(mode), int(batch), str(input), str(dtype), bool(channels_last),
                   compiled, int(threads), backend)


CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow) if f.name != "samples_ms")
_LITERALS = {"Status": "str", "Mode": "str", "DType": "str"}
_TYPES = {f.name: _LITERALS.get(f.type, f.type) for f in fields(ResultRow)}


def row_to_csv_dict(row: ResultRow) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data.pop("samples_ms")
    return {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


def row_from_csv_dict(data: dict[str, str]) -> ResultRow:
    """Parse one CSV record back into a typed row (extra columns, e.g. per-model counts, are ignored;
    columns an older archbench did not write take their defaults). Raises ValueError naming the column
    on a value that is not of the column's type."""
    values: dict[str, Any] = {}
    for name in CSV_COLUMNS:
        raw = data.get(name, "")
        if raw is None:
            raise ValueError(f"column {quoted(name)} is missing (the line has fewer fields than the header)")
        values[name] = _parse_value(name, _TYPES[name], raw)
    if values["status"] == "ok" and "note" not in data:  # archbench 0.1 kept an ok row's note in `error`
        values["note"], values["error"] = values["error"], ""
    if values["status"] not in STATUSES:
        raise ValueError(f"column 'status': {values['status']!r} is not one of {', '.join(STATUSES)}")
    # the row's schema (RESULT_ROW, below), as for the JSON and the store
    try:
        return ResultRow(**{**RESULT_ROW(values, ""), "samples_ms": ()})
    except SchemaError as exc:
        raise ValueError(f"column {quoted(exc.field)}: {exc.detail}") from None


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}


def _parse_value(name: str, kind: str, raw: str) -> Any:
    if kind not in ("bool", "int", "float"):
        return raw
    raw = raw.strip()
    try:
        if kind == "bool":
            return _BOOLS[raw.lower()]
        if kind == "int":
            number = float(raw) if raw else 0.0  # "8.0" is 8; "2.5" is not an integer (never truncated)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind == "float":
            return float(raw) if raw else math.nan
    except (KeyError, ValueError, OverflowError):
        raise ValueError(f"column {quoted(name)}: {quoted(raw)} is not a{'n' if kind == 'int' else ''} {kind}") from None


def append_rows_csv(path: str | Path, rows: Iterable[ResultRow]) -> None:
    """Append rows to a CSV file (writing the header first if the file is new) and flush to disk, so a
    finished cell survives a crash or Ctrl-C."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new and csv_header(path) != list(CSV_COLUMNS):
        _rewrite_with_current_columns(path)
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow(row_to_csv_dict(row))
        fh.flush()
        os.fsync(fh.fileno())


def _rewrite_with_current_columns(path: Path) -> None:
    """A CSV of an older archbench (fewer columns) gets today's header before rows are appended, so every
    line has the header's fields; its rows keep their values (new columns empty). Atomic."""
    rows = read_rows_csv(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(row_to_csv_dict(r) for r in rows)


@dataclass(frozen=True)
class CsvRows:
    """The rows of a results CSV, and warnings about what was skipped (an unfinished last line)."""

    rows: tuple[ResultRow, ...]
    warnings: tuple[str, ...] = ()
    torn_at: int | None = None  # byte offset where the unfinished last line starts


def read_results_csv(path: str | Path) -> CsvRows:
    """Read a results CSV. An unfinished last line (no line end: what a crash while appending leaves) is
    skipped with a warning naming ``file:line``; any other line that does not parse is a
    :class:`UsageError` naming ``file:line``."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a text CSV file ({exc.reason} at byte {exc.start}).") from exc
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    rows = tuple(_parse_rows(path, complete))
    if complete == text:
        return CsvRows(rows)
    line = complete.count("\n") + 1
    warning = (f"{path}:{line}: skipped an unfinished last line (cut off while it was written, e.g. by a crash); "
               "its cell is not in the results.")
    return CsvRows(rows, (warning,), len(complete.encode("utf-8")))


def _parse_rows(path: Path, text: str) -> Iterator[ResultRow]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for record in reader:
            try:
                if None in record:
                    raise ValueError(f"{len(reader.fieldnames) + len(record[None])} fields where the header has "
                                     f"{len(reader.fieldnames)}")
                yield row_from_csv_dict(record)
            except ValueError as exc:
                raise UsageError(f"{path}:{reader.line_num}: not a valid results row: {exc}. Fix or delete that line.") from None
    except csv.Error as exc:
        raise UsageError(f"{path}:{reader.line_num}: not a valid CSV line: {exc}. Fix or delete that line.") from None


def rows_to_resume(path: str | Path, resume: bool) -> CsvRows:
    """The rows already in the results CSV ``path`` that a run goes on from: none when the file is missing or
    empty; a :class:`UsageError` when it holds rows and ``resume`` is off, or lacks a cell's key columns. The
    caller cuts an unfinished last line (``torn_at``) once it accepts the rows, so new rows start a line."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return CsvRows(())
    if not resume:
        raise UsageError(f"{quoted(path, PATH_ECHO_LIMIT)} already holds results", remedies=("resume", "out"))
    missing = [c for c in REQUIRED_KEY_COLUMNS if c not in csv_header(path)]
    if missing:
        raise UsageError(f"{quoted(path, PATH_ECHO_LIMIT)} is not an archbench bench CSV (no column(s) {', '.join(missing)}); resuming "
                         "needs the results CSV an earlier bench run wrote.")
    return read_results_csv(path)


def read_rows_csv(path: str | Path) -> list[ResultRow]:
    """The rows of a results CSV (see :func:`read_results_csv`; its warnings are dropped)."""
    return list(read_results_csv(path).rows)


KEY_FIELDS = CellKey._fields
REQUIRED_KEY_COLUMNS = tuple(name for name in KEY_FIELDS if name != "backend")  # a file of an older archbench has none
RESULTS_CSV_COLUMNS = (*REQUIRED_KEY_COLUMNS, "status", "median_ms")  # what every results CSV has


def check_results_csv(path: str | Path, remedy: str = "") -> None:
    """``path`` has the columns of a results CSV (:data:`RESULTS_CSV_COLUMNS`), else a :class:`UsageError`
    naming those it lacks (then ``remedy``)."""
    header = csv_header(path)
    missing = [c for c in RESULTS_CSV_COLUMNS if c not in header]
    if missing:
        raise UsageError(f"{quoted(path, PATH_ECHO_LIMIT)} is not an archbench results CSV (no column(s) {', '.join(missing)}){remedy}.")


def row_to_json(row: ResultRow) -> dict[str, Any]:
    """Every field of ``row`` as JSON data (the samples as a list); NaN as null (JSON has no NaN)."""
    data = {**dataclasses.asdict(row), "samples_ms": list(row.samples_ms)}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


def row_from_json(data: Mapping[str, Any]) -> ResultRow:
    """A row as :func:`row_to_json` wrote it (null as NaN); raises :class:`~archbench.schemas.SchemaError`
    (a ValueError) naming the field of a row that is not of that shape."""
    values = RESULT_ROW(data, "")
    return ResultRow(**{**values, "samples_ms": tuple(values["samples_ms"])})


def check_same_sweep(path: str | Path, rows: Iterable[ResultRow], planned_keys: Iterable[tuple], options: Any) -> None:
    """A resumed sweep continues the sweep in ``path``: each of its rows must be a planned cell (a run may
    plan more cells, never others) measured with the same ``options`` (the run's
    :class:`~archbench.timing.options.MeasureOptions`: its precision, budget and min_samples; rows of an older
    archbench that did not record them are accepted). Raises :class:`UsageError` saying what differs and the
    stored value."""
    planned = set(planned_keys)
    asked = {"precision": options.precision, "max_time_s": options.budget_s, "min_samples": options.min_samples}
    for row in rows:
        if row.key() not in planned:
            raise UsageError(f"{quoted(path, PATH_ECHO_LIMIT)} holds another sweep: {_not_planned(row, planned)}. Resuming would mix two "
                             "sweeps in one file: repeat the original command, or write to another file.")
        for name, value in asked.items():
            stored = getattr(row, name)
            if stored and not (isinstance(stored, float) and math.isnan(stored)) and not math.isclose(stored, value):
                raise UsageError(f"{quoted(path, PATH_ECHO_LIMIT)} was measured with {name} = {stored:g} ({row.model}, {row.mode}, batch "
                                 f"{row.batch}); this run asks for {value:g}. Resume with the original options, or "
                                 "write to another file.")


def _not_planned(row: ResultRow, planned: set[tuple]) -> str:
    for index, name in enumerate(KEY_FIELDS):
        values = {key[index] for key in planned}
        if row.key()[index] not in values:
            shown = ", ".join(map(str, sorted(values, key=str)))
            return f"it has rows with {name} {row.key()[index]!r}, and this run plans {name} {shown}"
    return f"its cell {dict(zip(KEY_FIELDS, row.key()))} is not one of this run's cells"


# ------------------------------------------------------------------ the schemas of rows and counts

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


COUNT_COLUMNS: tuple[str, ...] = (
    "params",
    "params_trainable",
    "param_mb",
    "macs_per_sample",
    "macs_flag",  # "incomplete: N ops uncounted" when ops no formula counts ran (not in the MACs/FLOPs)
    "macs_with_norm_per_sample",
    "flops_forward_per_sample",
    "flops_backward_per_sample",
    "flops_backward_flag",
    "activation_mb_per_sample",
)
