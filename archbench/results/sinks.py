"""Where a finished row is kept, and what a write error costs: one write path that cannot lose a row.

A run keeps each finished row in two *sinks*: the results CSV (:class:`CsvSink`, appended by the sweep)
and the results store (:class:`~archbench.results.recorder.StoreRecorder`, the sweep's listener). A write error
in one — a full disk (``ENOSPC``), an I/O error, a file system that cannot sync, a value SQLite cannot
hold — never takes the row from the other: the failing sink stops (the CSV cut back to its last whole
row, so no half line stays), says why (:class:`WriteFailure`: the path and the errno), and the other goes
on. When no sink keeps rows any more, the sweep stops: measuring on would lose every further cell.

:func:`where_kept` sums up a run: the failures, and the finished rows that no sink kept (the CLI shows
them and exits 1; with every row kept somewhere, the usual exit code and a warning).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.errors import PATH_ECHO_LIMIT, quoted
from archbench.locations import os_reason
from archbench.rows import ResultRow, append_rows_csv


@dataclass(frozen=True)
class WriteFailure:
    """A sink that could not keep a row: which (``what``), where, and why (the OS's words and errno)."""

    what: str  # "the results CSV"
    path: str
    reason: str  # "No space left on device (errno 28, ENOSPC)"

    def __str__(self) -> str:
        return f"cannot write {self.what} {quoted(self.path, PATH_ECHO_LIMIT)}: {self.reason}"

    @classmethod
    def from_os_error(cls, what: str, path: str | Path, exc: OSError) -> WriteFailure:
        return cls(what, str(path), os_reason(exc))


class CsvSink:
    """The results CSV as a sink: :meth:`append` writes rows whole (flushed and fsynced:
    :func:`~archbench.rows.append_rows_csv`) and returns whether they were kept. After a write error the
    file is cut back to its size before the append (no half line, no row the store was not told about),
    ``failure`` says why, and later rows are not attempted (a full disk does not empty itself mid-run;
    appending after a torn write could glue two rows); ``unwritten`` holds every row it did not keep."""

    WHAT = "the results CSV"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.failure: WriteFailure | None = None
        self.unwritten: list[ResultRow] = []

    def append(self, rows: Sequence[ResultRow]) -> bool:
        if self.failure is not None:
            self.unwritten.extend(rows)
            return False
        size = _size(self.path)
        try:
            append_rows_csv(self.path, rows)
        except OSError as exc:
            self.failure = WriteFailure.from_os_error(self.WHAT, self.path, exc)
            self.unwritten.extend(rows)
            _cut_back(self.path, size)
            return False
        return True


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _cut_back(path: Path, size: int | None) -> None:
    """``path`` as it was before a failed append: its old size (0 when it is new: an empty CSV reads as no
    rows). Best effort: the disk that failed the write may fail this too."""
    try:
        os.truncate(path, size or 0)
    except OSError:
        pass


def keep_environment(out_csv: str | Path, env: dict[str, Any], extra: dict[str, Any]) -> WriteFailure | None:
    """Record the environment beside the CSV (:func:`~archbench.env.environment.append_environment`, atomic);
    a write error is returned, not raised: the rows are already kept."""
    from archbench.env.environment import append_environment, environment_path

    try:
        append_environment(out_csv, env, extra)
    except OSError as exc:
        return WriteFailure.from_os_error("the environment file", environment_path(out_csv), exc)
    return None


def keeps_rows(listener: Any) -> bool:
    """Whether ``listener`` still keeps the rows it is given somewhere (a recording store that has not
    failed): asked of its ``keeps_rows()``, False when it has none."""
    ask = getattr(listener, "keeps_rows", None) if listener is not None else None
    return bool(ask()) if ask is not None else False


def csv_failure_warning(failure: WriteFailure, store_keeps: bool) -> str:
    """The warning when the CSV fails mid-run: what happens to this row and the next."""
    if store_keeps:
        return f"{failure}. This cell and the next are kept in the results store only (not in the CSV)."
    return (f"{failure}. Nothing else keeps the finished cells (no results store records this run), so the run stops "
            "here.")


@dataclass(frozen=True)
class Kept:
    """Where a run's finished rows ended up: the sinks that failed, and the rows no sink kept."""

    failures: tuple[WriteFailure | str, ...] = ()
    lost: tuple[ResultRow, ...] = ()

    @property
    def complete(self) -> bool:
        """Every finished row is kept somewhere."""
        return not self.lost

    def summary(self) -> str:
        """One line for the end of the run ('' when every sink kept every row)."""
        if not self.failures and not self.lost:
            return ""
        why = "; ".join(str(f).rstrip(".") for f in self.failures)
        if self.lost:
            cells = ", ".join(f"{r.model} {r.mode} batch {r.batch} {r.input}" for r in self.lost[:3])
            more = f" and {len(self.lost) - 3} more" if len(self.lost) > 3 else ""
            return (f"{len(self.lost)} finished cell(s) could not be kept anywhere ({cells}{more}): {why}. Free the "
                    "space (or fix the location) and run again.")
        return f"{why}. Every finished cell is kept in the other place."


def where_kept(unwritten: Iterable[ResultRow], csv_failure: WriteFailure | None, recorder: Any = None) -> Kept:
    """The rows the CSV lacks (``unwritten``) that the store did not record either are lost. ``recorder``:
    the run's :class:`~archbench.results.recorder.StoreRecorder` (None: not recorded, e.g. ``--no-db``)."""
    failures: list[WriteFailure | str] = [csv_failure] if csv_failure is not None else []
    store_failure = getattr(recorder, "failure", None)
    if store_failure:
        failures.append(store_failure)
    recorded = recorder.recorded_keys() if recorder is not None else set()
    lost = tuple(r for r in unwritten if r.key() not in recorded)
    return Kept(tuple(failures), lost)
