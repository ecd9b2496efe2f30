"""The answer first: one line per model — parameters, MACs, and per mode the median time and the one
relative speed to quote — at the study's first device, dtype, input and batch. The detail tables follow.

Which relative speed to quote: the **paired** ratio of interleaved rounds (its CI comes from per-round
ratios, so the machine's drift falls out) when the row has one; "not comparable (measured under load)" when its
rounds were too rarely quiet for one; otherwise the unpaired ratio of the two
medians with the interval from their CI ends. The other figure stays in the CSV/JSON and the detail table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from archbench.report.relative import not_comparable_text, paired_speed, relative_speed
from archbench.report.tables import input_order, listed_models, table_keys
from archbench.results.significance import RatioEstimate
from archbench.rows import ResultRow
from archbench.units import fmt_int, fmt_ms, fmt_scaled

if TYPE_CHECKING:
    import pandas as pd

    from archbench.results.data import ReportData


class HeadlinePoint(NamedTuple):
    """Where the headline is read: the first device and dtype of the rows, the smallest input and batch."""

    device: str
    dtype: str
    input: str
    batch: int

    def text(self) -> str:
        return f"{self.device}, {self.dtype}, {self.input}, batch {self.batch}"


def headline_point(data: ReportData) -> HeadlinePoint | None:
    timed = [r for r in data.rows if r.status == "ok"] or list(data.rows)
    if not timed:
        return None
    device, dtype = timed[0].device, timed[0].dtype
    here = [r for r in timed if (r.device, r.dtype) == (device, dtype)]
    first_input = min({r.input for r in here}, key=input_order)
    return HeadlinePoint(device, dtype, first_input, min(r.batch for r in here if r.input == first_input))


def quoted_speed(reference: ResultRow, row: ResultRow) -> tuple[RatioEstimate, bool]:
    """The relative speed to quote (``m_ref / m``; > 1: faster) and whether it is the paired one."""
    paired = paired_speed(row)
    return (paired, True) if paired is not None else (relative_speed(reference, row), False)


def headline_table(data: ReportData) -> tuple[pd.DataFrame, HeadlinePoint] | None:
    """Text table (index = model): params, MACs per sample, then per mode ``<mode> ms`` and ``<mode> vs
    <reference>``; None without rows."""
    import pandas as pd

    point = headline_point(data)
    if point is None:
        return None
    reference = data.study.reference
    modes = [key.mode for key in table_keys(data.rows) if (key.device, key.dtype) == (point.device, point.dtype)]
    backend = next((r.backend for r in data.rows), "eager")  # the first backend's (eager's): one line per model
    at_point = {(r.model, r.mode): r for r in data.rows
                if (r.device, r.dtype, r.input, r.batch, r.backend) == (point.device, point.dtype, point.input, point.batch,
                                                                        backend)}
    body: dict[str, dict[str, str]] = {}
    for model in listed_models(data):
        stats = data.stats_for(model, point.input)
        line = {"params": fmt_int(stats.params_total) if stats else "—",
                "MACs": fmt_scaled(stats.macs / stats.batch, "MACs") + (" (incomplete)" if stats.macs_flag else "")
                if stats else "—"}
        for mode in modes:
            row, ref = at_point.get((model, mode)), at_point.get((reference, mode))
            line[f"{mode} ms"] = fmt_ms(row.median_ms) if row is not None and row.status == "ok" else (
                row.status if row is not None else "—")
            if model == reference:
                line[f"{mode} vs {reference}"] = "reference"
            elif row is not None and ref is not None and row.status == ref.status == "ok" and not_comparable_text(row):
                line[f"{mode} vs {reference}"] = not_comparable_text(row)
            elif row is not None and ref is not None and row.status == ref.status == "ok":
                speed, paired = quoted_speed(ref, row)
                line[f"{mode} vs {reference}"] = speed.text(bound=False) + (" paired" if paired else "")
            else:
                line[f"{mode} vs {reference}"] = "—"
        body[model] = line
    return pd.DataFrame.from_dict(body, orient="index"), point
