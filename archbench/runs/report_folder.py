"""A study's report folder: where it goes, who owns it and what an interrupted run left in it.

The folder belongs to one study: a folder holding another study's report, or the report of a study of the
same name that measured other models, grid or cell options, is never written to (unless ``force``); neither
is one holding report files archbench did not write. An interrupted run leaves its partial files
(``results.partial.csv``, ``.json``, and the raw samples in ``results.partial.samples.jsonl``) for a
resume to finish (:func:`prepare_dir`). :mod:`archbench.runs.compare` runs the study into it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from archbench.errors import PATH_ECHO_LIMIT, UsageError, quoted
from archbench.locations import CSV_NAME, JSON_NAME, LATEX_NAME, MARKDOWN_NAME
from archbench.results.data import ReportData
from archbench.results.sinks import WriteFailure, keeps_rows
from archbench.rows import ResultRow
from archbench.study import Study
from archbench.study.model import MEASURE_KEYS

REPORTS_DIR = Path("reports")
PARTIAL_CSV = "results.partial.csv"
PARTIAL_JSON = "results.partial.json"
PARTIAL_SAMPLES = "results.partial.samples.jsonl"
SHARDS_DIR = "shards"  # work units and shards of out-of-process executors (archbench.execute.executors)


def _notify(listener: Any, method: str, *args: Any) -> None:
    callback = getattr(listener, method, None) if listener is not None else None
    if callback is not None:
        callback(*args)


def report_dir(study: Study, base: str | Path = REPORTS_DIR) -> Path:
    """Where a study's report goes by default: ``reports/<study name>/``."""
    return Path(base) / study.name


# ----------------------------------------------------------------------------------- directories


def _study_identity(study: Study) -> dict[str, Any]:
    """What must match for ``--resume`` to continue a run: everything but the title and file path."""
    data = study.to_dict()
    data.pop("title")
    data.pop("path")
    data.pop("executor", None)  # where the cells run, not which
    return data


_BUDGET_OPTIONS = (*MEASURE_KEYS, "interleave")  # how cells are measured, not which


def _what_is_measured(study: dict[str, Any]) -> dict[str, Any]:
    """The parts of a study (as :meth:`Study.to_dict`) that decide its cells: a finished report is replaced
    without ``force`` only by a run of the same cells (a longer time budget is the same study)."""
    data = {k: v for k, v in study.items() if k not in ("name", "title", "path", "executor")}
    data["options"] = {k: v for k, v in (study.get("options") or {}).items() if k not in _BUDGET_OPTIONS}
    return data


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted({*old, *new}) for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix.rstrip('.')} {old!r} -> {new!r}"]


def _stored_study(path: Path) -> dict[str, Any] | None:
    try:
        study = json.loads(path.read_text(encoding="utf-8"))["study"]
        return study if isinstance(study, dict) and isinstance(study.get("name"), str) else None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def check_report_owner(out_dir: Path, study: Study, *, force: bool) -> None:
    """``out_dir`` may receive ``study``'s report: it holds no report of another study (by name, or by the
    cells measured), and no report files archbench did not write. ``force`` skips the check."""
    if force:
        return
    stored = _stored_study(out_dir / JSON_NAME)
    if stored is not None and stored["name"] != study.name:
        raise UsageError(f"{quoted(out_dir, PATH_ECHO_LIMIT)} holds the report of study {quoted(stored['name'])}, not {quoted(study.name)}",
                         remedies=("out", "force"))
    if stored is not None:
        changed = _differences(_what_is_measured(stored), _what_is_measured(study.to_dict()))
        if changed:
            raise UsageError(
                f"{quoted(out_dir, PATH_ECHO_LIMIT)} holds a report of study {quoted(study.name)} that measured other cells "
                f"({'; '.join(changed)})",
                remedies=("out", "force"))
    foreign = [n for n in (MARKDOWN_NAME, LATEX_NAME, CSV_NAME, JSON_NAME) if (out_dir / n).exists()]
    if stored is None and foreign and not partial_files(out_dir):
        raise UsageError(f"{quoted(out_dir, PATH_ECHO_LIMIT)} already holds {', '.join(foreign)}, which is not an archbench report",
                         remedies=("out", "force"))


def partial_files(out_dir: Path) -> list[Path]:
    return [out_dir / name for name in (PARTIAL_CSV, PARTIAL_JSON, PARTIAL_SAMPLES) if (out_dir / name).exists()]


def prepare_dir(out_dir: Path, study: Study, *, resume: bool, force: bool) -> ReportData | None:
    """Check that ``out_dir`` may hold this run, per the rules in the module docstring; returns the
    stored data of the interrupted run to resume, if any. Raises :class:`UsageError` otherwise."""
    check_report_owner(out_dir, study, force=force)
    partial = partial_files(out_dir)
    if not partial or force:
        shutil.rmtree(out_dir / SHARDS_DIR, ignore_errors=True)  # an earlier run's workers' results, not this run's
    if not partial:
        if resume:
            raise UsageError(f"nothing to resume in {quoted(out_dir, PATH_ECHO_LIMIT)}: no interrupted run of study "
                             f"{quoted(study.name)} is there",
                             remedies=("no_resume",))
        return None
    if force:
        for path in partial:
            path.unlink()
        return None
    if not resume:
        raise UsageError(f"{quoted(out_dir, PATH_ECHO_LIMIT)} holds an interrupted run ({out_dir / PARTIAL_CSV})",
                         remedies=("resume", "force"))
    from archbench.results.jsonfile import read_json

    if not (out_dir / PARTIAL_JSON).exists():
        raise UsageError(f"cannot resume in {quoted(out_dir, PATH_ECHO_LIMIT)}: {PARTIAL_JSON} is missing", remedies=("force",))
    stored = read_json(out_dir / PARTIAL_JSON)
    if _study_identity(stored.study) != _study_identity(study):
        raise UsageError(
            f"the interrupted run in {quoted(out_dir, PATH_ECHO_LIMIT)} is of a different study definition (study "
            f"{quoted(stored.study.name)}; models, grid or options changed). Resume it with its own definition", remedies=("force",)
        )
    return stored


# ----------------------------------------------------------------------------------------- samples


class SampleRecorder:
    """Forwards the sweep's callbacks to ``listener`` and appends each finished cell's raw samples to a
    JSON-lines file (flushed), so a resumed run still has every sample for ``results.json``."""

    def __init__(self, path: Path, listener: Any):
        self.path = path
        self.listener = listener
        self.failure: WriteFailure | None = None

    def sweep_started(self, total: int, already_done: int) -> None:
        _notify(self.listener, "sweep_started", total, already_done)

    def cell_started(self, cell, index: int, todo: int) -> None:
        _notify(self.listener, "cell_started", cell, index, todo)

    def cell_phase(self, cell, phase: str) -> None:
        _notify(self.listener, "cell_phase", cell, phase)

    def warning(self, message: str) -> None:
        _notify(self.listener, "warning", message)

    def cell_finished(self, cell, row: ResultRow, index: int, todo: int) -> None:
        if self.failure is None:
            try:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"key": list(row.key()), "samples_ms": list(row.samples_ms)}) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:  # the row itself goes on to the CSV and the store (archbench.results.sinks)
                self.failure = WriteFailure.from_os_error("the raw samples file", self.path, exc)
                _notify(self.listener, "warning", f"{self.failure}. The results store keeps the raw samples of this "
                                                  "cell and the next; a report written from the folder lacks them.")
        _notify(self.listener, "cell_finished", cell, row, index, todo)

    def keeps_rows(self) -> bool:
        return keeps_rows(self.listener)


def read_samples(path: Path) -> dict[tuple, tuple[float, ...]]:
    samples: dict[tuple, tuple[float, ...]] = {}
    if not path.exists():
        return samples
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            samples[tuple(record["key"])] = tuple(float(v) for v in record["samples_ms"])
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # a line cut by a crash (or not archbench's): that cell's samples are lost, its row is not
    return samples


def with_samples(rows: Iterable[ResultRow], samples: dict[tuple, tuple[float, ...]]) -> tuple[ResultRow, ...]:
    return tuple(r if r.samples_ms else dataclasses.replace(r, samples_ms=samples.get(r.key(), ())) for r in rows)

