"""Each model against the reference, cell by cell: the ratio of the medians with the interval from the CI
ends (:func:`~archbench.results.significance.ratio_of_rows`), or the paired ratio of interleaved rows, as a
frame (:func:`relative_speeds`) and as tables (:func:`relative_tables`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from archbench.diff.comparability import CELL_SYMBOLS, NOT_COMPARABLE_TEXT
from archbench.report.frame import rows_frame
from archbench.report.tables import (
    TableKey,
    column_label,
    key_rows,
    listed_models,
    pivot_text,
    reading_order,
    table_columns,
    table_keys,
)
from archbench.results.significance import RatioEstimate, ratio_of_rows
from archbench.rows import CellKey, ResultRow

if TYPE_CHECKING:
    import pandas as pd

    from archbench.results.data import ReportData


def relative_speed(reference: ResultRow, row: ResultRow) -> RatioEstimate:
    """How many times faster ``row`` ran than ``reference``: ``m_ref / m`` (> 1: faster) with the interval
    ``[ref_low / high, ref_high / low]`` and a lower bound on its coverage (:func:`ratio_of_rows`)."""
    return ratio_of_rows(reference, row)


def paired_speed(row) -> RatioEstimate | None:
    """An interleaved row's speed against the reference: the inverse of its median per-round time ratio
    (``1 / paired_ratio``, the CI's ends inverted; no coverage bound); None for a row without one."""
    if not math.isfinite(row.paired_ratio):
        return None
    return RatioEstimate(row.paired_ratio, row.paired_ratio_low, row.paired_ratio_high, math.nan).inverse()


def not_comparable_text(row) -> str:
    """``≠ not comparable (measured under load)`` for an interleaved row whose rounds were too rarely quiet for
    a paired ratio (its ``paired_reason``; the medians under load give no clean ratio either); else empty."""
    return f"{CELL_SYMBOLS['not comparable']} {NOT_COMPARABLE_TEXT}" if getattr(row, "paired_reason", "") else ""


def paired_text(row) -> str:
    """`` · ×1.84 (1.80–1.88) paired``: an interleaved row's speed against the reference from its median
    per-round time ratio (:func:`paired_speed`); empty for a row without one."""
    speed = paired_speed(row)
    return "" if speed is None else f" · {speed.text(bound=False)} paired"


_NO_RATIO = RatioEstimate(math.nan, math.nan, math.nan, math.nan)
_CELL = [name for name in CellKey._fields if name != "model"]  # a cell of the grid, whichever model ran it


_TIMES = ["median_ms", "ci_low_ms", "ci_high_ms", "ci_coverage", "n_samples"]  # what relative_speed reads


RELATIVE_COLUMNS = ["model", "reference", "device", "mode", "batch", "input", "dtype", "backend", *RatioEstimate._fields,
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
    pairs = reading_order(ok[ok["model"] != reference].merge(references, on=_CELL, suffixes=("", "_ref")),
                           list(data.study.models))
    key_rank = {(k.device, k.dtype, k.mode, k.backend): rank for rank, k in enumerate(table_keys(data.rows))}
    pairs = pairs.assign(_key=[key_rank[k] for k in zip(pairs["device"], pairs["dtype"], pairs["mode"], pairs["backend"])])
    pairs = pairs.sort_values("_key", kind="stable").reset_index(drop=True)
    ref_times = pairs[[f"{name}_ref" for name in _TIMES]].set_axis(_TIMES, axis=1)
    speeds = [relative_speed(ref, row) if not not_comparable_text(row) else _NO_RATIO
              for ref, row in zip(ref_times.itertuples(index=False), pairs.itertuples(index=False))]
    measured = pd.DataFrame(speeds, columns=list(RatioEstimate._fields), index=pairs.index)
    # the one figure to quote: the paired ratio where the models were interleaved (the unpaired one stays in
    # the ratio/low/high columns, the CSV and the JSON)
    # (a row measured under load too often for a paired ratio: "not comparable", no figure at all)
    texts = [not_comparable_text(row) or paired_text(row).removeprefix(" · ") or speed.text()
             for speed, row in zip(speeds, pairs.itertuples(index=False))]
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
        group = key_rows(speeds, key)
        if group.empty:
            continue
        cells = group[group["model"].isin(others)].drop_duplicates(["model", "column"], keep="last")
        result.append((key, pivot_text(cells, others, table_columns(key_rows(rows, key)))))
    return result
