"""The comparison report: one :class:`ReportData` in, files out, one module per output format.

Every format is an object with a ``name`` and ``write(data, out_dir) -> list[Path]`` (after pip-audit's
``_format/``): :mod:`~archbench.report.csvfile` (``results.csv``), :mod:`~archbench.results.jsonfile`
(``results.json``), :mod:`~archbench.report.markdown` (``report.md``), :mod:`~archbench.report.latex`
(``report.tex``, booktabs tables for a paper) and :mod:`~archbench.report.plots` (PNG + SVG).
:mod:`~archbench.report.frame` turns the rows and counts into DataFrames (the one step from results to
tables), :mod:`~archbench.report.tables` reshapes them into the tables the formats (and the CLI) render.

Everything a report shows is in :class:`ReportData`, and ``results.json`` stores all of it, so
``archbench report results.csv`` re-renders the same Markdown without measuring (the date is the one
stored, never "now"). Nothing here prints; torch is never imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from archbench.results.data import ReportData


class ReportFormat(Protocol):
    """One output format: writes its file(s) for ``data`` into ``out_dir`` atomically."""

    name: str

    def write(self, data: ReportData, out_dir: Path) -> list[Path]: ...


def all_formats() -> list[ReportFormat]:
    """Every format, in the order they are written (the Markdown links to the others)."""
    from archbench.report.csvfile import CsvFormat
    from archbench.report.latex import LatexFormat
    from archbench.report.markdown import MarkdownFormat
    from archbench.report.plots import PlotsFormat
    from archbench.results.jsonfile import JsonFormat

    return [CsvFormat(), JsonFormat(), PlotsFormat(), MarkdownFormat(), LatexFormat()]


def write_report(data: ReportData, out_dir: str | Path, formats: Sequence[ReportFormat] | None = None) -> list[Path]:
    """Write every format (or ``formats``) into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in formats if formats is not None else all_formats():
        written += fmt.write(data, out_dir)
    return written


def load_report_data(results_csv: str | Path) -> ReportData:
    """The data of a stored report: rows from ``results_csv`` (the CSV is what the user names, so its
    rows win), everything else from the JSON of the same stem beside it (``results.json``)."""
    from archbench.results.jsonfile import load_results

    return load_results(results_csv)[0]


__all__ = [
    "ReportFormat",
    "all_formats",
    "load_report_data",
    "write_report",
]
