"""The report's tables as pandas DataFrames, shared by the Markdown report, LaTeX and the console summary
(the text of each cell: :mod:`archbench.report.cells`; each model against the reference:
:mod:`archbench.report.relative`).

* :func:`architecture_table` — one row per model: counts at its default input, batch 1 (numbers);
* :func:`macs_per_input_table` — forward GMACs of each model at each input of the grid (numbers);
* :func:`speed_tables` / :func:`efficiency_tables` / :func:`memory_tables` — per device, dtype and mode:
  rows = models, columns = input x batch, cells as text (median, CI labelled with its coverage when
  below 95%, samples/s; TFLOP/s and % of peak; peak MB), failed cells ``OOM``/``error`` and cells
  measured under load with a footnote;
* :func:`precision_summary` — how precise the cells are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from archbench.parsing import parse_input
from archbench.report.cells import (
    LOAD_MARK,
    Footnotes,
    efficiency_cell,
    failure_label,
    failure_message,
    memory_cell,
    speed_cell,
)
from archbench.report.frame import rows_frame, stats_frame
from archbench.rows import ModelStats, ResultRow
from archbench.units import MIB, fmt_int, fmt_scaled, fmt_sig

if TYPE_CHECKING:
    import pandas as pd

    from archbench.results.data import ReportData


def input_order(text: str) -> tuple:
    """Sort key of an input: by pixel count, then channels (``3x32x32`` before ``3x64x64``)."""
    c, h, w = parse_input(text)
    return (h * w, c, h, w)


def architecture_table(data: ReportData) -> pd.DataFrame:
    """One row per model, counts at its default input and batch 1 (NaN where the model did not run):
    ``params``, ``param_mb`` (parameters + buffers, MiB), ``gmacs`` (forward MACs of convolutions, matrix
    products and attention: torchvision's ``_ops`` convention; 1 MAC = one multiply-accumulate),
    ``gmacs_with_norm`` (+ normalisation and pooling: fvcore's / timm's convention), ``gflops_forward``
    (= 2 x GMACs), ``gflops_backward``,
    ``activation_mb_per_sample`` (measured, MiB) and ``input``."""
    import pandas as pd

    models = pd.DataFrame([(m.name, m.input) for m in data.models], columns=["model", "input"])
    counts = models.merge(stats_frame(data.stats), on=["model", "input"], how="left")
    return pd.DataFrame({
        "model": counts["model"],
        "params": counts["params_total"],
        "param_mb": counts["param_bytes"] / MIB,
        "gmacs": counts["macs"] / 1e9,
        "gmacs_with_norm": counts["macs_with_norm"].astype(float) / 1e9,
        "gflops_forward": counts["flops_forward"] / 1e9,
        "gflops_backward": counts["flops_backward"] / 1e9,
        "activation_mb_per_sample": counts["activation_bytes"] / counts["batch"] / MIB,
        "input": counts["input"],
    })


ARCHITECTURE_HEADERS = {
    "params": "params",
    "param_mb": "param memory (MB)",
    "gmacs": "forward MACs",
    "gmacs_with_norm": "MACs with norm",
    "gflops_forward": "forward FLOPs",
    "gflops_backward": "backward FLOPs",
    "activation_mb_per_sample": "activations (MB/sample)",
    "input": "default input",
}


def architecture_text(data: ReportData, footnotes: Footnotes) -> pd.DataFrame:
    """:func:`architecture_table` as text (index = model, columns = :data:`ARCHITECTURE_HEADERS`), the
    ops no counter accounted for, or why a model did not run, footnoted on its GMACs."""
    arch = architecture_table(data)
    numbers = ["param_mb", "activation_mb_per_sample"]
    counts = {"gmacs": "MACs", "gmacs_with_norm": "MACs", "gflops_forward": "FLOPs", "gflops_backward": "FLOPs"}
    text = arch.assign(params=arch["params"].map(fmt_int), **{name: arch[name].map(fmt_sig) for name in numbers},
                       **{name: (arch[name] * 1e9).map(lambda v, u=unit: fmt_scaled(v, u)) for name, unit in counts.items()})
    marks = [_counts_mark(data, model, input, footnotes) for model, input in zip(arch["model"], arch["input"])]
    text["gmacs"] = text["gmacs"] + marks
    return text.set_index("model")[list(ARCHITECTURE_HEADERS)].rename(columns=ARCHITECTURE_HEADERS)


def _counts_mark(data: ReportData, model: str, input: str, footnotes: Footnotes) -> str:
    stats = data.stats_for(model, input)
    if stats and (stats.macs_flag or stats.flops_backward_flag):
        return " (incomplete)" + footnotes.mark(incomplete_note(model, input, stats))
    failure = data.stats_error(model, input)
    return footnotes.mark(f"{model} at {input}: {failure}") if failure else ""


def incomplete_note(model: str, input: str, stats: ModelStats) -> str:
    """The footnote of a count that leaves out ops no formula counts (forward, backward or both)."""
    parts = []
    for flag, ops, what in ((stats.macs_flag, stats.uncounted_ops, "MACs and forward FLOPs"),
                            (stats.flops_backward_flag, stats.backward_uncounted_ops, "backward FLOPs")):
        if flag:
            parts.append(f"{flag} in the {what} ({', '.join(f'{op} ×{n}' for op, n in sorted(ops.items()))})")
    return f"{model} at {input}: " + "; ".join(parts) + ": no formula counts them, so these totals are too low."


def grid_inputs(data: ReportData) -> list[str]:
    """The inputs of the measured cells (or of the study grid), smallest first."""
    inputs = {r.input for r in data.rows}
    if data.study.grid.inputs:
        inputs |= {"x".join(map(str, s)) for s in data.study.grid.inputs}
    return sorted(inputs, key=input_order)


def grid_differs_from_defaults(data: ReportData) -> bool:
    """Whether the grid's inputs are other than the models' default inputs (then the report adds the
    GMACs at each input of the grid)."""
    inputs = grid_inputs(data)
    return bool(inputs) and set(inputs) != {m.input for m in data.models}


def macs_per_input_table(data: ReportData) -> pd.DataFrame:
    """Forward GMACs (batch 1) of each model (rows) at each input of the grid (columns); NaN where the
    model does not run on that input."""
    macs = stats_frame(data.stats).pivot(index="model", columns="input", values="macs")
    table = macs.reindex(index=[m.name for m in data.models], columns=grid_inputs(data)).astype(float) / 1e9
    return table.rename_axis(index=None, columns=None)


def macs_per_input_text(data: ReportData, footnotes: Footnotes) -> pd.DataFrame:
    """:func:`macs_per_input_table` as text: ``error`` with a footnote where the model failed on the input,
    ``—`` where it was not counted."""
    table = macs_per_input_table(data)
    body = {model: [fmt_scaled(value * 1e9, "MACs") + _incomplete_mark(data, model, column, footnotes)
                    if math.isfinite(value) else _failed_count(data, model, column, footnotes)
                    for column, value in values.items()] for model, values in table.iterrows()}
    return _text_frame(body, list(table.columns))


def _incomplete_mark(data: ReportData, model: str, input: str, footnotes: Footnotes) -> str:
    stats = data.stats_for(model, input)
    return " (incomplete)" + footnotes.mark(incomplete_note(model, input, stats)) if stats and stats.macs_flag else ""


def _failed_count(data: ReportData, model: str, input: str, footnotes: Footnotes) -> str:
    failure = data.stats_error(model, input)
    return "error" + footnotes.mark(f"{model} at {input}: {failure}") if failure else "—"


class TableKey(NamedTuple):
    device: str
    dtype: str
    mode: str
    tf32: bool = False  # fp32 cells whose convolutions / matmuls ran as TF32 on the GPU
    backend: str = "eager"  # each backend its own tables (archbench.report.backends compares them)

    def title(self) -> str:
        backend = f" · {self.backend}" if self.backend != "eager" else ""
        return f"{self.device} · {self.mode} · {self.dtype}{' (tf32)' if self.tf32 else ''}{backend}"


def table_keys(rows: Iterable[ResultRow]) -> list[TableKey]:
    """The (device, dtype, mode, backend) groups of the rows, in run order (mode infer before train)."""
    rows = list(rows)
    devices = list(dict.fromkeys(r.device for r in rows))
    dtypes = list(dict.fromkeys(r.dtype for r in rows))
    modes = sorted({r.mode for r in rows}, key=lambda m: (m != "infer", m))
    backends = list(dict.fromkeys(r.backend for r in rows))
    present = {(r.device, r.dtype, r.mode, r.backend) for r in rows}
    tf32 = {(r.device, r.dtype, r.mode) for r in rows if r.tf32}
    return [TableKey(d, t, m, (d, t, m) in tf32, b) for d in devices for t in dtypes for m in modes for b in backends
            if (d, t, m, b) in present]


def column_label(input: str, batch: int) -> str:
    return f"{input} · b{batch}"


def key_rows(frame: pd.DataFrame, key: TableKey) -> pd.DataFrame:
    """The lines of ``frame`` in ``key``'s device, dtype and mode, with their ``column`` label."""
    rows = frame[(frame["device"] == key.device) & (frame["dtype"] == key.dtype) & (frame["mode"] == key.mode)
                 & (frame["backend"] == key.backend)]
    return rows.assign(column=[column_label(i, b) for i, b in zip(rows["input"], rows["batch"])])


def reading_order(cells: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """``cells`` in the order a table reads them: models as listed (others after), then input (smallest
    first) and batch; ties keep their order."""
    model_rank = {m: i for i, m in enumerate(models)}
    input_rank = {s: i for i, s in enumerate(sorted(set(cells["input"]), key=input_order))}
    ranked = cells.assign(_model=cells["model"].map(lambda m: model_rank.get(m, len(model_rank))),
                          _input=cells["input"].map(input_rank))
    return ranked.sort_values(["_model", "_input", "batch"], kind="stable").drop(columns=["_model", "_input"])


def table_columns(rows: pd.DataFrame) -> list[str]:
    """The column labels of a table's rows: input (smallest first), then batch."""
    return list(dict.fromkeys(reading_order(rows, [])["column"]))


def listed_models(data: ReportData) -> list[str]:
    """The models a table has rows for: the report's models, or those of the rows when it lists none."""
    return [m.name for m in data.models] or list(dict.fromkeys(r.model for r in data.rows))


def _text_frame(body: dict[str, list[str]], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame.from_dict(body, orient="index", columns=columns)
    frame.index.name = "model"
    return frame


def pivot_text(cells: pd.DataFrame, models: list[str], columns: list[str]) -> pd.DataFrame:
    """The ``text`` of ``cells`` (one per model and column) as a table: rows = ``models``, columns =
    ``columns``, ``—`` where a model has no cell (not in the grid for it, or the run was cut short)."""
    table = cells.pivot(index="model", columns="column", values="text").reindex(index=models, columns=columns)
    return table.astype(object).fillna("—").rename_axis(index="model", columns=None)


def text_table(data: ReportData, key: TableKey, render, footnotes: Footnotes, flag_load: bool = False) -> pd.DataFrame:
    """``render(row, footnotes)`` for each ok cell; failed cells as ``OOM``/``error`` with a footnote;
    with ``flag_load``, cells measured under load get a footnote too. Footnotes are numbered in reading
    order (row by row)."""
    rows = key_rows(rows_frame(data.rows), key)
    models = listed_models(data)
    shown = rows[rows["model"].isin(models)].drop_duplicates(["model", "column"], keep="last")
    cells = reading_order(shown, models)
    texts = [_cell_text(row, render, footnotes, flag_load) for row in cells.itertuples(index=False)]
    return pivot_text(cells.assign(text=texts), models, table_columns(rows))


def _cell_text(row: ResultRow, render, footnotes: Footnotes, flag_load: bool) -> str:
    if row.status != "ok":
        return failure_label(row) + footnotes.mark(failure_message(row))
    loaded = f" {LOAD_MARK}" if flag_load and row.under_load else ""  # listed once, below the tables
    return render(row, footnotes) + loaded


def speed_tables(data: ReportData, footnotes: Footnotes) -> list[tuple[TableKey, pd.DataFrame]]:
    """Per device, dtype and mode: the median time per step with its CI, and samples/s; cells measured
    under load footnoted."""
    return [(key, text_table(data, key, speed_cell, footnotes, flag_load=True)) for key in table_keys(data.rows)]


def efficiency_tables(data: ReportData, footnotes: Footnotes) -> list[tuple[TableKey, pd.DataFrame]]:
    """Per device, dtype and mode: achieved TFLOP/s and the fraction of the measured device peak (none
    where that peak is no ceiling, also for results stored before archbench applied the rule)."""
    import dataclasses

    notes = emulated_peaks(data.peaks_tflops)
    rows = tuple(dataclasses.replace(r, peak_fraction=math.nan, note=notes[f"{r.device}/{r.dtype}"])
                 if f"{r.device}/{r.dtype}" in notes and r.status == "ok" else r for r in data.rows)
    data = dataclasses.replace(data, rows=rows)
    return [(key, text_table(data, key, efficiency_cell, footnotes)) for key in table_keys(data.rows)]


def emulated_peaks(peaks_tflops) -> dict[str, str]:
    """``"cpu/bf16"`` -> why that stored peak is no ceiling (below the same device's fp32 peak)."""
    from archbench.timing.peak import emulated_peak_note

    notes = {}
    for key, peak in peaks_tflops.items():
        device, _, dtype = key.rpartition("/")
        fp32 = peaks_tflops.get(f"{device}/fp32")
        note = emulated_peak_note(device, dtype, peak, fp32) if fp32 is not None else ""
        if note:
            notes[key] = note
    return notes


def memory_tables(data: ReportData, footnotes: Footnotes) -> list[tuple[TableKey, pd.DataFrame]]:
    """Per device, dtype and mode: each cell's peak memory in MB (``peak_mem_mb``)."""
    return [(key, text_table(data, key, memory_cell, footnotes)) for key in table_keys(data.rows)]


@dataclass(frozen=True)
class PrecisionSummary:
    """How precise the measured cells are: the CI half-width as a fraction of the median."""

    cells_ok: int
    cells_failed: int
    converged: int  # cells whose CI met the precision target before the time budget ran out
    median_rel_half_width: float
    max_rel_half_width: float
    widest: ResultRow | None
    min_samples: int
    noisy: int


def precision_summary(rows: Iterable[ResultRow]) -> PrecisionSummary:
    import statistics

    rows = list(rows)
    ok = [r for r in rows if r.status == "ok" and r.median_ms > 0]
    widths = [(r.ci_high_ms - r.ci_low_ms) / 2 / r.median_ms for r in ok]  # CI half-width / median
    widest = ok[widths.index(max(widths))] if ok else None
    return PrecisionSummary(
        cells_ok=len(ok),
        cells_failed=len(rows) - len(ok),
        converged=sum(r.stop_reason == "precision" for r in ok),
        median_rel_half_width=statistics.median(widths) if widths else math.nan,
        max_rel_half_width=max(widths) if widths else math.nan,
        widest=widest,
        min_samples=min((r.n_samples for r in ok), default=0),
        noisy=sum(r.noisy for r in ok),
    )
