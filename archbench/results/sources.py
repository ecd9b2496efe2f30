"""Every source of results → report data, in one place: ``archbench report``, ``archbench diff`` and a
merged report read their arguments through :func:`load_source` (no torch import).

A source is a run of the results store (``12``, ``latest``, ``latest~N``), a compare report's folder, its
``results.csv`` (the raw samples re-attached from the ``results.json`` beside it) or that ``results.json``,
or a bench CSV (its environments and device peaks from the ``FILE.env.json`` beside it). Rows that no
study file defined (a bench run's) get the study of the grid they span (:func:`rows_report_data`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from archbench.errors import PATH_ECHO_LIMIT, StoreError, UsageError, quoted
from archbench.files import csv_header
from archbench.locations import CSV_NAME, JSON_NAME
from archbench.results.store import Store, default_db_path, is_run_ref
from archbench.rows import COUNT_COLUMNS, ResultRow, check_results_csv

if TYPE_CHECKING:
    from archbench.results.data import ReportData

_REMEDY = ": give the CSV of a bench run, the results.csv of a compare report, a report folder or a run of the store"


@dataclasses.dataclass(frozen=True)
class Source:
    """A loaded source: its report data and the warnings reading it gave; ``name``, what the user gave
    (the path, or ``run 12``); ``label``, a short name for file and device labels (``run12``, ``laptop``)."""

    label: str
    data: ReportData
    warnings: tuple[str, ...] = ()
    run_id: int | None = None  # a run of the store
    path: Path | None = None  # a results file (bench's CSV, or a compare report's results.csv or results.json)
    bench: bool = False  # ``path`` is a bench CSV
    name: str = ""


def load_source(text: str, db_path: str | Path | None = None) -> Source:
    """The report data of one source (see the module docstring); the store at ``db_path`` (default:
    :func:`~archbench.results.store.default_db_path`) when ``text`` names a run. A path that exists wins
    over a run of the same name."""
    from archbench.results.jsonfile import load_results, read_json

    path = Path(text)
    if path.is_dir():
        if not (path / JSON_NAME).is_file():
            raise UsageError(f"{quoted(path, PATH_ECHO_LIMIT)} is a folder without {JSON_NAME}: give the folder of an `archbench compare` "
                             "report, or a results CSV.")
        name, path = str(path), path / CSV_NAME if (path / CSV_NAME).is_file() else path / JSON_NAME
    elif not path.exists():
        if not is_run_ref(text):
            raise UsageError(f"{quoted(text, PATH_ECHO_LIMIT)} is neither a results CSV, a report folder nor a run of the results store "
                             "(a run id such as 12, latest or latest~N): give an existing file or folder, or a run.")
        with Store.open(db_path or default_db_path(), readonly=True) as store:
            run_id = store.resolve(text)
            return Source(f"run{run_id}", run_report_data(store, run_id), run_id=run_id, name=f"run {run_id}")
    else:
        name = str(path)
    if path.suffix == ".json":
        data, warnings = read_json(path), ()
    else:
        check_results_csv(path, _REMEDY)
        if is_bench_csv(path):
            data, warnings = bench_csv_report_data(path)
            return Source(_label(path.stem), data, warnings, path=path, bench=True, name=name)
        data, warnings = load_results(path)
    return Source(_label(path.parent.name if path.name in (CSV_NAME, JSON_NAME) else path.stem), data, warnings,
                  path=path, name=name)


def _label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "source"


def run_report_data(store: Store, run_id: int) -> ReportData:
    """The report of a stored run: a compare run's own (study, counts), with the stored rows; a bench run's
    built from its rows (:func:`rows_report_data`)."""
    import dataclasses

    from archbench.results.jsonfile import data_from_json

    info = store.run_info(run_id)
    rows = tuple(store.rows(run_id))
    if not rows:
        raise StoreError(f"run {run_id} in {quoted(store.path, PATH_ECHO_LIMIT)} has no finished cell: there is nothing to report.")
    peaks = {f"{device}/{dtype}": tflops for (device, dtype, _), tflops in store.peaks(run_id).items()}
    date = info.finished_utc or info.started_utc
    stored = store.report_json(run_id)
    if stored is None:
        return rows_report_data(rows, name=f"run-{run_id}", title=info.title or f"{' vs '.join(info.models)} (run {run_id})",
                                environments=(info.env,), peaks_tflops=peaks, command=info.command, date=date,
                                planned_cells=info.planned_cells)
    data = data_from_json(stored, f"the results store {quoted(store.path, PATH_ECHO_LIMIT)}, run {run_id}: report")
    return dataclasses.replace(data, rows=rows, peaks_tflops={**data.peaks_tflops, **peaks}, date=date)


def rows_report_data(rows: Iterable[ResultRow], *, name: str, title: str = "", environments=(), peaks_tflops=None,
                     command: str = "", date: str = "", planned_cells: int = 0) -> ReportData:
    """A report of rows that no study file defined (a bench run or CSV): its study is the grid the rows
    span, the reference its first model, and it has no counts (bench does not count the models)."""
    from archbench.parsing import parse_input
    from archbench.results.data import ModelInfo, ReportData
    from archbench.study import Grid, Study, StudyOptions
    from archbench.timing.options import MeasureOptions

    rows = tuple(rows)

    def values(name: str) -> tuple:
        return tuple(dict.fromkeys(getattr(r, name) for r in rows))

    first = rows[0]
    models = values("model")
    grid = Grid(devices=values("device"), inputs=tuple(parse_input(i) for i in values("input")),
                batches=tuple(sorted(values("batch"))), modes=values("mode"), dtypes=values("dtype"),
                backends=values("backend"))
    try:
        measure = MeasureOptions(first.precision, first.max_time_s if math.isfinite(first.max_time_s) else None,
                                 first.min_samples)
    except ValueError:  # rows that do not record their options
        measure = MeasureOptions()
    options = StudyOptions(measure, channels_last=first.channels_last, compiled=first.compiled,
                           threads=first.threads or None)
    infos = tuple(ModelInfo(m, "", "", next(r.input for r in rows if r.model == m)) for m in models)
    study = Study(name, models, grid, options, title=title or " vs ".join(models))
    return ReportData(study, rows, infos, environments=tuple(environments), peaks_tflops=dict(peaks_tflops or {}),
                      command=command, date=date, planned_cells=planned_cells or len(rows))


def is_bench_csv(path: Path) -> bool:
    """Whether ``path`` is to be read as a bench CSV: a file with no report JSON beside it (compare's
    ``results.csv`` has one) and without compare's count columns."""
    from archbench.results.jsonfile import sidecar_path

    return path.is_file() and not sidecar_path(path).is_file() and not set(COUNT_COLUMNS) & set(csv_header(path))


def bench_csv_report_data(path: Path) -> tuple[ReportData, tuple[str, ...]]:
    """The report of a bench CSV: its rows, with the environments and device peaks bench keeps beside it
    (``FILE.env.json``), and warnings (an unfinished last line, skipped)."""
    from archbench.env.environment import read_environment
    from archbench.rows import read_results_csv

    check_results_csv(path, _REMEDY)
    contents = read_results_csv(path)
    if not contents.rows:
        raise UsageError(f"{quoted(path, PATH_ECHO_LIMIT)} holds no rows: there is nothing to report.")
    sessions, env_warning = read_environment(path)
    peaks = {key: value for s in sessions for key, value in (s.get("peaks_tflops") or {}).items()}
    environments = tuple({k: v for k, v in s.items() if k != "peaks_tflops"} for s in sessions)
    date = str(sessions[-1].get("date", "")) if sessions else ""
    data = rows_report_data(contents.rows, name=path.stem, environments=environments, peaks_tflops=peaks, date=date)
    return data, (*contents.warnings, *env_warning)
