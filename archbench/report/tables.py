"""The report's tables as pandas DataFrames, shared by the Markdown report and the console summary.

* :func:`architecture_table` — one row per model: counts at its default input, batch 1 (numbers);
* :func:`macs_per_input_table` — forward GMACs of each model at each input of the grid (numbers);
* :func:`speed_tables` / :func:`efficiency_tables` — per device, dtype and mode: rows = models,
  columns = input x batch, cells as text (median, 95% CI, samples/s; TFLOP/s and % of peak), failed
  cells ``OOM``/``error`` with a footnote;
* :func:`relative_speeds` — each model against the reference, cell by cell, with the uncertainty
  propagated from both confidence intervals (see :func:`relative_speed`);
* :func:`precision_summary` — how precise the cells are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, NamedTuple

from archbench.options import parse_input
from archbench.results import ResultRow

if TYPE_CHECKING:
    import pandas as pd

    from archbench.report import ReportData

MIB = 2**20
NOT_CONVERGED = "†"

# ------------------------------------------------------------------------------------------ numbers


def fmt_ms(value: float) -> str:
    """Milliseconds with three significant digits (at least one decimal below 100 ms)."""
    if value is None or not math.isfinite(value):
        return "—"
    for limit, digits in ((100, 0), (10, 1), (1, 2)):
        if abs(value) >= limit:
            return f"{value:,.{digits}f}"
    return f"{value:.3f}"


def fmt_sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, thousands separated (``1,234``, ``12.3``, ``0.0123``)."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def fmt_int(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{int(value):,}"


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


def failure_label(row: ResultRow) -> str:
    return "OOM" if row.status == "oom" else "error"


def failure_message(row: ResultRow) -> str:
    return f"{row.model}, {row.device} {row.mode}, batch {row.batch}, {row.input}, {row.dtype}: {row.error or row.status}"


# ---------------------------------------------------------------------------------- architecture


def architecture_table(data: "ReportData") -> "pd.DataFrame":
    """One row per model, counts at its default input and batch 1 (NaN where the model did not run):
    ``params``, ``param_mb`` (parameters + buffers, MiB), ``gmacs`` (forward, fvcore: 1 MAC = one
    multiply-accumulate), ``gflops_forward`` (= 2 x GMACs), ``gflops_backward``,
    ``activation_mb_per_sample`` (measured, MiB) and ``input``."""
    import pandas as pd

    records = []
    for info in data.models:
        stats = data.stats_for(info.name, info.input)
        records.append({
            "model": info.name,
            "params": stats.params_total if stats else math.nan,
            "param_mb": stats.param_bytes / MIB if stats else math.nan,
            "gmacs": stats.macs / 1e9 if stats else math.nan,
            "gflops_forward": stats.flops_forward / 1e9 if stats else math.nan,
            "gflops_backward": stats.flops_backward / 1e9 if stats else math.nan,
            "activation_mb_per_sample": stats.activation_bytes_per_sample / MIB if stats else math.nan,
            "input": info.input,
        })
    return pd.DataFrame.from_records(records, columns=["model", "params", "param_mb", "gmacs", "gflops_forward",
                                                       "gflops_backward", "activation_mb_per_sample", "input"])


def grid_inputs(data: "ReportData") -> list[str]:
    """The inputs of the measured cells (or of the study grid), smallest first."""
    inputs = {r.input for r in data.rows}
    if data.study.grid.inputs:
        inputs |= {"x".join(map(str, s)) for s in data.study.grid.inputs}
    return sorted(inputs, key=input_order)


def macs_per_input_table(data: "ReportData") -> "pd.DataFrame":
    """Forward GMACs (batch 1) of each model (rows) at each input of the grid (columns); NaN where the
    model does not run on that input."""
    import pandas as pd

    inputs = grid_inputs(data)
    table = {}
    for info in data.models:
        table[info.name] = [s.macs / 1e9 if (s := data.stats_for(info.name, i)) else math.nan for i in inputs]
    return pd.DataFrame.from_dict(table, orient="index", columns=inputs)


# ------------------------------------------------------------------------------------------ speed


class TableKey(NamedTuple):
    device: str
    dtype: str
    mode: str

    def title(self) -> str:
        return f"{self.device} · {self.mode} · {self.dtype}"


def table_keys(rows: Iterable[ResultRow]) -> list[TableKey]:
    """The (device, dtype, mode) groups of the rows, in run order (mode infer before train)."""
    rows = list(rows)
    devices = list(dict.fromkeys(r.device for r in rows))
    dtypes = list(dict.fromkeys(r.dtype for r in rows))
    modes = sorted({r.mode for r in rows}, key=lambda m: (m != "infer", m))
    present = {(r.device, r.dtype, r.mode) for r in rows}
    return [TableKey(d, t, m) for d in devices for t in dtypes for m in modes if (d, t, m) in present]


def column_label(input: str, batch: int) -> str:
    return f"{input} · b{batch}"


def _grouped_cells(data: "ReportData", key: TableKey) -> tuple[list[str], dict[tuple[str, str], ResultRow]]:
    rows = [r for r in data.rows if (r.device, r.dtype, r.mode) == tuple(key)]
    columns = sorted({(r.input, r.batch) for r in rows}, key=lambda c: (input_order(c[0]), c[1]))
    cells = {(r.model, column_label(r.input, r.batch)): r for r in rows}
    return [column_label(i, b) for i, b in columns], cells


def _text_table(data: "ReportData", key: TableKey, render, footnotes: Footnotes) -> "pd.DataFrame":
    import pandas as pd

    columns, cells = _grouped_cells(data, key)
    models = [m.name for m in data.models] or list(dict.fromkeys(r.model for r in data.rows))
    body = {}
    for model in models:
        line = []
        for column in columns:
            row = cells.get((model, column))
            if row is None:
                line.append("—")  # not measured (not in the grid for this model, or the run was cut short)
            elif row.status != "ok":
                line.append(failure_label(row) + footnotes.mark(failure_message(row)))
            else:
                line.append(render(row))
        body[model] = line
    frame = pd.DataFrame.from_dict(body, orient="index", columns=columns)
    frame.index.name = "model"
    return frame


def speed_cell(row: ResultRow) -> str:
    """``12.3 ms (12.1–12.6) · 650 /s``; ``†`` when sampling stopped before the CI met the precision target."""
    mark = NOT_CONVERGED if row.stop_reason and row.stop_reason != "precision" else ""
    return (f"{fmt_ms(row.median_ms)} ms ({fmt_ms(row.ci_low_ms)}–{fmt_ms(row.ci_high_ms)}){mark}"
            f" · {fmt_sig(row.samples_per_s)} /s")


def efficiency_cell(row: ResultRow) -> str:
    """``0.123 TFLOP/s (12.3%)`` — achieved FLOP rate and fraction of the measured device peak."""
    if not math.isfinite(row.achieved_tflops):
        return "—"
    share = f" ({100 * row.peak_fraction:.1f}%)" if math.isfinite(row.peak_fraction) else ""
    return f"{fmt_sig(row.achieved_tflops)}{share}"


def speed_tables(data: "ReportData", footnotes: Footnotes) -> list[tuple[TableKey, "pd.DataFrame"]]:
    """Per device, dtype and mode: the median time per step with its 95% CI, and samples/s."""
    return [(key, _text_table(data, key, speed_cell, footnotes)) for key in table_keys(data.rows)]


def efficiency_tables(data: "ReportData", footnotes: Footnotes) -> list[tuple[TableKey, "pd.DataFrame"]]:
    """Per device, dtype and mode: achieved TFLOP/s and the fraction of the measured device peak."""
    return [(key, _text_table(data, key, efficiency_cell, footnotes)) for key in table_keys(data.rows)]


# --------------------------------------------------------------------------------- relative speed


def half_width(row: ResultRow) -> float:
    """Half the width of the 95% CI of the median, in ms (the uncertainty of the median)."""
    return (row.ci_high_ms - row.ci_low_ms) / 2


def relative_speed(reference: ResultRow, row: ResultRow) -> tuple[float, float]:
    """How many times faster ``row`` ran than ``reference``, and the uncertainty of that ratio.

    ``r = m_ref / m``, the ratio of the medians. Each median's uncertainty is the half-width of its 95%
    CI, ``h = (ci_high - ci_low) / 2``; relative uncertainties of a quotient add in quadrature::

        u = r * sqrt((h_ref / m_ref)**2 + (h / m)**2)

    (first-order propagation, treating the two measurements as independent)."""
    ratio = reference.median_ms / row.median_ms
    relative = math.hypot(half_width(reference) / reference.median_ms, half_width(row) / row.median_ms)
    return ratio, ratio * relative


def speed_phrase(ratio: float, uncertainty: float) -> str:
    """``2.31 ± 0.06 × faster`` for ``ratio >= 1``; otherwise ``1.85 ± 0.04 × slower`` (the inverse
    ratio, whose uncertainty is ``u / r**2``: the relative uncertainty is the same)."""
    if ratio >= 1:
        return f"{ratio:.2f} ± {uncertainty:.2f} × faster"
    return f"{1 / ratio:.2f} ± {uncertainty / ratio**2:.2f} × slower"


def cell_context(row: ResultRow, with_dtype: bool) -> str:
    parts = [row.mode, f"batch {row.batch}", row.input, row.device, *([row.dtype] if with_dtype else [])]
    return ", ".join(parts)


def relative_speeds(data: "ReportData") -> "pd.DataFrame":
    """Each non-reference model against the reference in every cell both measured successfully:
    ``ratio`` (``m_ref / m``; > 1 means faster), ``uncertainty`` and the sentence, e.g.
    "resnext-50 ran 2.31 ± 0.06 × faster than wrn-40-10 (train, batch 8, 3x32x32, cpu)"."""
    import pandas as pd

    reference = data.study.reference
    with_dtype = len({r.dtype for r in data.rows}) > 1
    ref_rows = {_cell(r): r for r in data.rows if r.model == reference and r.status == "ok"}
    records = []
    for key in table_keys(data.rows):
        for row in sorted((r for r in data.rows if (r.device, r.dtype, r.mode) == tuple(key)),
                          key=lambda r: (_model_order(data, r.model), input_order(r.input), r.batch)):
            ref = ref_rows.get(_cell(row))
            if row.model == reference or row.status != "ok" or ref is None:
                continue
            ratio, uncertainty = relative_speed(ref, row)
            records.append({
                "model": row.model, "reference": reference, "device": row.device, "mode": row.mode,
                "batch": row.batch, "input": row.input, "dtype": row.dtype, "ratio": ratio, "uncertainty": uncertainty,
                "sentence": f"{row.model} ran {speed_phrase(ratio, uncertainty)} than {reference} ({cell_context(row, with_dtype)})",
            })
    columns = ["model", "reference", "device", "mode", "batch", "input", "dtype", "ratio", "uncertainty", "sentence"]
    return pd.DataFrame.from_records(records, columns=columns)


def _cell(row: ResultRow) -> tuple:
    return (row.device, row.mode, row.batch, row.input, row.dtype, row.channels_last, row.compiled, row.threads)


def _model_order(data: "ReportData", model: str) -> int:
    names = list(data.study.models)
    return names.index(model) if model in names else len(names)


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
