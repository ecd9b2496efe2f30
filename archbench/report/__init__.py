"""The comparison report: one :class:`ReportData` in, files out, one module per output format.

Every format is an object with a ``name`` and ``write(data, out_dir) -> list[Path]`` (after pip-audit's
``_format/``): :mod:`~archbench.report.csvfile` (``results.csv``), :mod:`~archbench.report.jsonfile`
(``results.json``), :mod:`~archbench.report.markdown` (``report.md``), :mod:`~archbench.report.latex`
(``report.tex``, booktabs tables for a paper) and :mod:`~archbench.report.plots` (PNG + SVG).
:mod:`~archbench.report.frame` turns the rows and counts into DataFrames (the one step from results to
tables), :mod:`~archbench.report.tables` reshapes them into the tables the formats (and the CLI) render.

Everything a report shows is in :class:`ReportData`, and ``results.json`` stores all of it, so
``archbench report results.csv`` re-renders the same Markdown without measuring (the date is the one
stored, never "now"). Nothing here prints; torch is never imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from archbench.results import ModelStats, ResultRow
from archbench.runs.study import Study

CSV_NAME = "results.csv"
JSON_NAME = "results.json"
MARKDOWN_NAME = "report.md"
LATEX_NAME = "report.tex"


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about a model besides its counts."""

    name: str
    family: str
    description: str
    input: str  # the model's default input, "3x32x32"


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows.

    ``stats`` are batch-1 counts, one per model and input (each model's default input and every input
    of the grid); ``stats_errors`` holds ``(model, input, message)`` where a model did not run on an
    input. ``environments`` is one fingerprint per session that measured rows (more than one after
    ``--resume``). ``date`` is when the last cell finished (UTC, ISO 8601)."""

    study: Study
    rows: tuple[ResultRow, ...]
    models: tuple[ModelInfo, ...]
    stats: tuple[ModelStats, ...] = ()
    stats_errors: tuple[tuple[str, str, str], ...] = ()
    environments: tuple[Mapping[str, Any], ...] = ()
    peaks_tflops: Mapping[str, float] = field(default_factory=dict, hash=False)
    command: str = ""
    date: str = ""
    planned_cells: int = 0

    @property
    def environment(self) -> Mapping[str, Any]:
        """The fingerprint of the first session (the one the report shows in full)."""
        return self.environments[0] if self.environments else {}

    def stats_for(self, model: str, input: str) -> ModelStats | None:
        return next((s for s in self.stats if s.model == model and s.input == input), None)

    def stats_error(self, model: str, input: str) -> str | None:
        return next((msg for m, i, msg in self.stats_errors if m == model and i == input), None)

    def info(self, model: str) -> ModelInfo | None:
        return next((m for m in self.models if m.name == model), None)

    @property
    def complete(self) -> bool:
        return len(self.rows) >= self.planned_cells


class ReportFormat(Protocol):
    """One output format: writes its file(s) for ``data`` into ``out_dir`` atomically."""

    name: str

    def write(self, data: ReportData, out_dir: Path) -> list[Path]: ...


def all_formats() -> list[ReportFormat]:
    """Every format, in the order they are written (the Markdown links to the others)."""
    from archbench.report.csvfile import CsvFormat
    from archbench.report.jsonfile import JsonFormat
    from archbench.report.latex import LatexFormat
    from archbench.report.markdown import MarkdownFormat
    from archbench.report.plots import PlotsFormat

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
    from archbench.report.jsonfile import load_results

    return load_results(results_csv)[0]


__all__ = [
    "CSV_NAME",
    "JSON_NAME",
    "LATEX_NAME",
    "MARKDOWN_NAME",
    "ModelInfo",
    "ReportData",
    "ReportFormat",
    "all_formats",
    "load_report_data",
    "write_report",
]
