"""Typed results: one frozen dataclass per kind of result, units in the field names (no torch import).

* :class:`ModelStats` — what a model costs at one input and batch: counts and memory (``archbench summary``).
* :class:`ResultRow` — one timing cell of a sweep (the CSV contract read by the report).
* rows <-> CSV / pandas DataFrame.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

STATUSES = ("ok", "oom", "error", "unsupported")  # unsupported: the device cannot run the dtype natively


@dataclass(frozen=True)
class ModelStats:
    """Counts and memory of one model at one input and batch.

    MAC/FLOP convention: 1 multiply-accumulate = 1 MAC = 2 FLOPs. ``macs`` is fvcore's forward count
    (fvcore calls a MAC a "flop"); ``flops_forward`` = 2 x ``macs``; ``flops_backward`` is the FLOPs of
    a training step's backward pass (grouped-convolution weight gradients counted correctly).
    ``uncounted_ops`` lists the ops no counter accounted for (op name -> how often it ran).
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

    @property
    def activation_bytes_per_sample(self) -> float:
        return self.activation_bytes / self.batch


@dataclass(frozen=True)
class ResultRow:
    """One measured cell: a model at one device/mode/batch/input/dtype/options point.

    Times are per step (one forward for ``infer``, forward+loss+backward for ``train``). A cell that ran
    out of memory or failed is still a row (``status`` ``oom``/``error`` with ``error``), never a crash.
    """

    model: str
    device: str  # "cpu" | "cuda" (the device name is in the environment fingerprint)
    mode: str  # "infer" | "train"
    batch: int
    input: str  # "3x32x32"
    dtype: str  # "fp32" | "bf16" | "fp16"
    channels_last: bool = False
    compiled: bool = False
    threads: int = 0
    status: str = "ok"
    error: str = ""
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
    compile_s: float = math.nan  # --compile: seconds of the compiling first call (not in the samples or budget)
    samples_ms: tuple[float, ...] = field(default=(), repr=False)  # raw samples (JSON only, not CSV)

    def key(self) -> tuple:
        """Identity of the cell, used by ``--resume`` to skip cells already measured."""
        return cell_key(self.model, self.device, self.mode, self.batch, self.input, self.dtype, self.channels_last, self.compiled, self.threads)


def cell_key(model: str, device: str, mode: str, batch: int, input: str, dtype: str, channels_last: bool, compiled: bool, threads: int) -> tuple:
    return (model, device, mode, int(batch), input, dtype, bool(channels_last), bool(compiled), int(threads))


CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow) if f.name != "samples_ms")
_TYPES = {f.name: f.type for f in fields(ResultRow)}


def row_to_csv_dict(row: ResultRow) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data.pop("samples_ms")
    return {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


def row_from_csv_dict(data: dict[str, str]) -> ResultRow:
    """Parse one CSV record back into a typed row (extra columns, e.g. per-model counts, are ignored)."""
    values: dict[str, Any] = {}
    for name in CSV_COLUMNS:
        raw = data.get(name, "")
        kind = _TYPES[name]
        if kind == "bool":
            values[name] = str(raw).strip().lower() in ("true", "1", "yes")
        elif kind == "int":
            values[name] = int(float(raw)) if str(raw).strip() else 0
        elif kind == "float":
            values[name] = float(raw) if str(raw).strip() else math.nan
        else:
            values[name] = raw if raw is not None else ""
    return ResultRow(**values)


def append_rows_csv(path: str | Path, rows: Iterable[ResultRow]) -> None:
    """Append rows to a CSV file (writing the header first if the file is new) and flush to disk, so a
    finished cell survives a crash or Ctrl-C."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow(row_to_csv_dict(row))
        fh.flush()
        os.fsync(fh.fileno())


def read_rows_csv(path: str | Path) -> list[ResultRow]:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return [row_from_csv_dict(rec) for rec in csv.DictReader(fh)]


def iter_keys(rows: Iterable[ResultRow]) -> Iterator[tuple]:
    return (r.key() for r in rows)


def rows_to_frame(rows: Iterable[ResultRow]):
    """Rows as a pandas DataFrame with the CSV columns (raw samples dropped)."""
    import pandas as pd

    return pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=[*CSV_COLUMNS]).astype({"batch": int})
