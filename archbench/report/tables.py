"""The report's tables as pandas DataFrames, shared by the Markdown report and the console summary.

* :func:`architecture_table` — one row per model: counts at its default input, batch 1 (numbers);
* :func:`macs_per_input_table` — forward GMACs of each model at each input of the grid (numbers);
* :func:`speed_tables` / :func:`efficiency_tables` / :func:`memory_tables` — per device, dtype and mode:
  rows = models, columns = input x batch, cells as text (median, CI labelled with its coverage when
  below 95%, samples/s; TFLOP/s and % of peak; peak MB), failed cells ``OOM``/``error`` and cells
  measured under load with a footnote;
* :func:`relative_speeds` / :func:`relative_tables` — each model against the reference, cell by cell,
  the ratio of medians with the interval from the CI ends (see :func:`relative_speed`);
* :func:`precision_summary` — how precise the cells are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from archbench.parsing import parse_input
from archbench.report.frame import rows_frame, stats_frame
from archbench.results.significance import ci_coverage, coverage_percent
from archbench.rows import CellKey, ModelStats, ResultRow
from archbench.timing.load import LOAD_THRESHOLD
from archbench.timing.stats import CONFIDENCE
from archbench.units import fmt_int, fmt_ms, fmt_scaled, fmt_sig

if TYPE_CHECKING:
    import pandas as pd

    from archbench.results.data import ReportData

MIB = 2**20
NOT_CONVERGED = "†"

# ------------------------------------------------------------------------------------------ numbers


def input_order(text: str) -> tuple:
    """Sort key of an input: by pixel count, then channels (``3x32x32`` before ``3x64x64``)."""
    c, h, w = parse_input(text)
    return (h * w, c, h, w)


# -------------------------------------------------------------------------------------- footnotes


class Footnotes:
    """Numbers the messages of failed cells (one number per distinct message) for the tables that
    mention them. ``style="markdown"`` marks with ``[^n]`` (GitHub footnotes), ``"plain"`` with ``[n]``."""

    def __init__(self, style: str = "markdown"):
        self.style = style
        self.messages: list[str] = []

    def mark(self, message: str) -> str:
        if message not in self.messages:
            self.messages.append(message)
        number = self.messages.index(message) + 1
        return f"[^{number}]" if self.style == "markdown" else f" [{number}]"

    def items(self) -> list[tuple[int, str]]:
        return list(enumerate(self.messages, start=1))


def ci_label(row: ResultRow) -> str:
    """``95% CI``, or the actual coverage (``93.7% CI``) of an interval that covers less."""
    coverage = ci_coverage(row)
    if not math.isfinite(coverage) or coverage >= CONFIDENCE:
        return f"{100 * CONFIDENCE:g}% CI"
    return f"{coverage_percent(coverage)} CI"


def under_coverage(row: ResultRow) -> bool:
    return math.isfinite(ci_coverage(row)) and ci_coverage(row) < CONFIDENCE


def load_message(row: ResultRow) -> str:
    if row.rounds:  # interleaved: the load was read around each of its bursts
        inflated = f"its median is about ×{row.load_ratio:.2f} what the quiet rounds ran at" if math.isfinite(
            row.load_ratio) else "no round was quiet, so how much is unknown"
        why = (f"over a tenth of its bursts ran under CPU pressure, in {row.loaded_rounds} of its {row.rounds} rounds "
               f"({inflated}); its paired ratio leaves those rounds out when six quiet ones remain")
    elif row.load_ratio > LOAD_THRESHOLD:
        why = f"the calibration kernel ran {row.load_ratio:.2f}× slower around this cell than at the start of the sweep"
    else:
        why = "other processes kept the CPU cores it needed busy while it ran"
    return (f"{row.model}, {row.device} {row.mode}, batch {row.batch}, {row.input}, {row.dtype}: measured under load — "
            f"{why}, so its time is probably inflated.")


def failure_label(row: ResultRow) -> str:
    return "OOM" if row.status == "oom" else "error"


def failure_message(row: ResultRow) -> str:
    return f"{row.model}, {row.device} {row.mode}, batch {row.batch}, {row.input}, {row.dtype}: {row.error or row.status}"


# ---------------------------------------------------------------------------------- architecture


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


# ------------------------------------------------------------------------------------------ speed


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


def _key_rows(frame: pd.DataFrame, key: TableKey) -> pd.DataFrame:
    """The lines of ``frame`` in ``key``'s device, dtype and mode, with their ``column`` label."""
    rows = frame[(frame["device"] == key.device) & (frame["dtype"] == key.dtype) & (frame["mode"] == key.mode)
                 & (frame["backend"] == key.backend)]
    return rows.assign(column=[column_label(i, b) for i, b in zip(rows["input"], rows["batch"])])


def _reading_order(cells: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """``cells`` in the order a table reads them: models as listed (others after), then input (smallest
    first) and batch; ties keep their order."""
    model_rank = {m: i for i, m in enumerate(models)}
    input_rank = {s: i for i, s in enumerate(sorted(set(cells["input"]), key=input_order))}
    ranked = cells.assign(_model=cells["model"].map(lambda m: model_rank.get(m, len(model_rank))),
                          _input=cells["input"].map(input_rank))
    return ranked.sort_values(["_model", "_input", "batch"], kind="stable").drop(columns=["_model", "_input"])


def _columns(rows: pd.DataFrame) -> list[str]:
    """The column labels of a table's rows: input (smallest first), then batch."""
    return list(dict.fromkeys(_reading_order(rows, [])["column"]))


def listed_models(data: ReportData) -> list[str]:
    """The models a table has rows for: the report's models, or those of the rows when it lists none."""
    return [m.name for m in data.models] or list(dict.fromkeys(r.model for r in data.rows))


def _text_frame(body: dict[str, list[str]], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame.from_dict(body, orient="index", columns=columns)
    frame.index.name = "model"
    return frame


def _pivot(cells: pd.DataFrame, models: list[str], columns: list[str]) -> pd.DataFrame:
    """The ``text`` of ``cells`` (one per model and column) as a table: rows = ``models``, columns =
    ``columns``, ``—`` where a model has no cell (not in the grid for it, or the run was cut short)."""
    table = cells.pivot(index="model", columns="column", values="text").reindex(index=models, columns=columns)
    return table.astype(object).fillna("—").rename_axis(index="model", columns=None)


def text_table(data: ReportData, key: TableKey, render, footnotes: Footnotes, flag_load: bool = False) -> pd.DataFrame:
    """``render(row, footnotes)`` for each ok cell; failed cells as ``OOM``/``error`` with a footnote;
    with ``flag_load``, cells measured under load get a footnote too. Footnotes are numbered in reading
    order (row by row)."""
    rows = _key_rows(rows_frame(data.rows), key)
    models = listed_models(data)
    shown = rows[rows["model"].isin(models)].drop_duplicates(["model", "column"], keep="last")
    cells = _reading_order(shown, models)
    texts = [_cell_text(row, render, footnotes, flag_load) for row in cells.itertuples(index=False)]
    return _pivot(cells.assign(text=texts), models, _columns(rows))


def _cell_text(row: ResultRow, render, footnotes: Footnotes, flag_load: bool) -> str:
    if row.status != "ok":
        return failure_label(row) + footnotes.mark(failure_message(row))
    loaded = f" {LOAD_MARK}" if flag_load and row.under_load else ""  # listed once, below the tables
    return render(row, footnotes) + loaded


LOAD_MARK = "‡"


def load_note(rows: Iterable[ResultRow]) -> str:
    """One note for every cell measured under load (each marked ``‡`` in the speed tables), or ``""``."""
    loaded = [r for r in rows if r.status == "ok" and r.under_load]
    if not loaded:
        return ""
    return f"{LOAD_MARK} Measured under load, so probably inflated: " + " ".join(load_message(r) for r in loaded)


def ci_text(row: ResultRow) -> str:
    """``12.1–12.6``, with the coverage when below 95% (``12.1–12.6; 93.7% CI``)."""
    coverage = f"; {ci_label(row)}" if under_coverage(row) else ""
    return f"{fmt_ms(row.ci_low_ms)}–{fmt_ms(row.ci_high_ms)}{coverage}"


def time_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    """``12.3 (12.1–12.6)†``: the median in ms and its CI, one number per cell (for a paper)."""
    mark = NOT_CONVERGED if row.stop_reason and row.stop_reason != "precision" else ""
    return f"{fmt_ms(row.median_ms)} ({ci_text(row)}){mark}"


def throughput_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    return fmt_sig(row.samples_per_s)


def speed_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    """``12.3 ms (12.1–12.6) · 650 /s``; ``†`` when sampling stopped before the CI met the precision target."""
    mark = NOT_CONVERGED if row.stop_reason and row.stop_reason != "precision" else ""
    return f"{fmt_ms(row.median_ms)} ms ({ci_text(row)}){mark} · {fmt_sig(row.samples_per_s)} /s"


def efficiency_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    """``0.123 (12.3%)`` — achieved TFLOP/s and fraction of the measured device peak; a row's note (why
    there is no count or no % of peak) as a footnote."""
    note = footnotes.mark(row.note) if footnotes is not None and row.note else ""
    if not math.isfinite(row.achieved_tflops):
        return "—" + note
    share = f" ({100 * row.peak_fraction:.1f}%)" if math.isfinite(row.peak_fraction) else ""
    return f"{fmt_sig(row.achieved_tflops)}{share}{note}"


def memory_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    return fmt_sig(row.peak_mem_mb)


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


# --------------------------------------------------------------------------------- relative speed


def half_width(row: ResultRow) -> float:
    """Half the width of the CI of the median, in ms (the uncertainty of the median)."""
    return (row.ci_high_ms - row.ci_low_ms) / 2


class RelativeSpeed(NamedTuple):
    """How many times faster a model ran than the reference: ``ratio`` with its interval ``low``–``high``
    and ``coverage``, a lower bound on the interval's coverage."""

    ratio: float
    low: float
    high: float
    coverage: float

    def text(self) -> str:
        """``×2.50 (2.34–2.74)``; the coverage bound is added when below that of two 95% CIs."""
        bound = f"; ≥{coverage_percent(self.coverage)}" if self.coverage < CONFIDENCE**2 - 1e-12 else ""
        return f"×{fmt_sig(self.ratio)} ({fmt_sig(self.low)}–{fmt_sig(self.high)}{bound})"


def relative_speed(reference: ResultRow, row: ResultRow) -> RelativeSpeed:
    """``ratio = m_ref / m`` (> 1: ``row`` ran faster), and the interval from the CI ends:
    ``[ref_low / high, ref_high / low]``.

    The interval holds the true ratio whenever both true medians lie in their CIs, so its coverage is at
    least the product of the two CIs' coverages (90.25% for two 95% CIs), with no assumption about the
    shape of either distribution; it is asymmetric, as a ratio of two uncertain numbers is."""
    return RelativeSpeed(
        ratio=reference.median_ms / row.median_ms,
        low=reference.ci_low_ms / row.ci_high_ms,
        high=reference.ci_high_ms / row.ci_low_ms,
        coverage=ci_coverage(reference) * ci_coverage(row),
    )


def paired_text(row) -> str:
    """`` · ×1.84 (1.80–1.88) paired``: an interleaved row's speed against the reference from its median
    per-round time ratio (``1 / paired_ratio``, the CI's ends inverted); empty for a row without one."""
    if not math.isfinite(row.paired_ratio):
        return ""
    return (f" · ×{fmt_sig(1 / row.paired_ratio)} ({fmt_sig(1 / row.paired_ratio_high)}–"
            f"{fmt_sig(1 / row.paired_ratio_low)}) paired")


_CELL = [name for name in CellKey._fields if name != "model"]  # a cell of the grid, whichever model ran it
_TIMES = ["median_ms", "ci_low_ms", "ci_high_ms", "ci_coverage", "n_samples"]  # what relative_speed reads
RELATIVE_COLUMNS = ["model", "reference", "device", "mode", "batch", "input", "dtype", "backend", *RelativeSpeed._fields,
                    "text", "column"]


def relative_speeds(data: ReportData) -> pd.DataFrame:
    """Each non-reference model against the reference in every cell both measured successfully:
    ``ratio`` (``m_ref / m``; > 1 means faster), ``low``/``high`` (its interval), ``coverage`` (a lower
    bound) and ``text`` (``×2.50 (2.34–2.74)``, with the paired figure of interleaved rows:
    :func:`paired_text`); by table, then model, input and batch."""
    import pandas as pd

    reference = data.study.reference
    frame = rows_frame(data.rows)
    ok = frame[frame["status"] == "ok"]
    references = ok[ok["model"] == reference].drop_duplicates(_CELL, keep="last")[[*_CELL, *_TIMES]]
    pairs = _reading_order(ok[ok["model"] != reference].merge(references, on=_CELL, suffixes=("", "_ref")),
                           list(data.study.models))
    key_rank = {(k.device, k.dtype, k.mode, k.backend): rank for rank, k in enumerate(table_keys(data.rows))}
    pairs = pairs.assign(_key=[key_rank[k] for k in zip(pairs["device"], pairs["dtype"], pairs["mode"], pairs["backend"])])
    pairs = pairs.sort_values("_key", kind="stable").reset_index(drop=True)
    ref_times = pairs[[f"{name}_ref" for name in _TIMES]].set_axis(_TIMES, axis=1)
    speeds = [relative_speed(ref, row) for ref, row in zip(ref_times.itertuples(index=False), pairs.itertuples(index=False))]
    measured = pd.DataFrame(speeds, columns=list(RelativeSpeed._fields), index=pairs.index)
    # the one figure to quote: the paired ratio where the models were interleaved (the unpaired one stays in
    # the ratio/low/high columns, the CSV and the JSON)
    texts = [paired_text(row).removeprefix(" · ") or speed.text() for speed, row in zip(speeds, pairs.itertuples(index=False))]
    return pairs.join(measured).assign(reference=reference, text=texts,
                                       column=[column_label(i, b) for i, b in zip(pairs["input"], pairs["batch"])])[RELATIVE_COLUMNS]


def relative_tables(data: ReportData) -> list[tuple[TableKey, pd.DataFrame]]:
    """Per device, dtype and mode: rows = the models other than the reference, columns = input x batch,
    cells ``×ratio (low–high)``; ``—`` where the model or the reference has no successful timing."""
    speeds = relative_speeds(data)
    rows = rows_frame(data.rows)
    others = [m for m in listed_models(data) if m != data.study.reference]
    result = []
    for key in table_keys(data.rows):
        group = _key_rows(speeds, key)
        if group.empty:
            continue
        cells = group[group["model"].isin(others)].drop_duplicates(["model", "column"], keep="last")
        result.append((key, _pivot(cells, others, _columns(_key_rows(rows, key)))))
    return result


def cell_context(row: ResultRow, with_dtype: bool) -> str:
    parts = [row.mode, f"batch {row.batch}", row.input, row.device, *([row.dtype] if with_dtype else [])]
    return ", ".join(parts)


# ------------------------------------------------------------------------------------- precision


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
    widths = [half_width(r) / r.median_ms for r in ok]
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
