"""The one step from results to tables: rows and counts as pandas DataFrames.

Every table of a report (Markdown, LaTeX, CSV, the console summary) is a reshaping of these frames:
:func:`rows_frame` holds one line per measured cell with the CSV columns, :func:`stats_frame` one line
per counted (model, input). A record of :func:`rows_frame` (``frame.itertuples(index=False)``) has the
attributes of a :class:`~archbench.rows.ResultRow`, so the cell formatters of
:mod:`archbench.report.tables` take either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import TYPE_CHECKING

from archbench.rows import CSV_COLUMNS, ModelStats, ResultRow

if TYPE_CHECKING:
    import pandas as pd

STATS_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ModelStats))


def rows_frame(rows: Iterable[ResultRow]) -> pd.DataFrame:
    """One line per cell, in the rows' order, with the CSV columns (:data:`~archbench.rows.CSV_COLUMNS`;
    the raw samples are left out); NaN where a failed cell has no number."""
    import pandas as pd

    return pd.DataFrame([{name: getattr(row, name) for name in CSV_COLUMNS} for row in rows], columns=list(CSV_COLUMNS))


def stats_frame(stats: Iterable[ModelStats]) -> pd.DataFrame:
    """One line per counted (model, input) with the :class:`~archbench.rows.ModelStats` fields; the
    first line stands where a (model, input) was counted twice (as
    :meth:`~archbench.report.ReportData.stats_for` reads it)."""
    import pandas as pd

    frame = pd.DataFrame([{name: getattr(s, name) for name in STATS_COLUMNS} for s in stats], columns=list(STATS_COLUMNS))
    return frame.drop_duplicates(["model", "input"], keep="first")
