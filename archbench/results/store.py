"""The results store: every run, its cells and their raw samples, in one SQLite file (stdlib ``sqlite3``).

Tables (schema version :data:`SCHEMA_VERSION` in ``PRAGMA user_version``; ``PRAGMA application_id`` marks
the file as archbench's):

* ``runs``: ``id``, ``started_utc``, ``finished_utc`` (NULL while the run goes on, or after it was
  killed), ``command`` (the command line that reproduces it), ``title``, ``out_path`` (the CSV or report
  folder it wrote; a resumed run is found by it), ``planned_cells``, ``env`` (the environment
  fingerprint, JSON), ``git_commit`` (of the working directory, ``+dirty`` with changes; NULL outside a
  repository), ``report`` (a compare run: its report's data besides the rows, JSON; NULL for bench),
  ``host``, ``pid``, ``pid_token`` (the process writing it: :mod:`archbench.results.liveness`, so a run whose
  process was killed reads as ``interrupted``, not as running forever);
* ``device_peaks``: ``run_id``, ``device``, ``dtype``, ``threads`` (0 on CUDA), ``tflops``;
* ``cells``: ``id``, ``run_id`` and one column per :class:`~archbench.rows.ResultRow` field (the CSV
  columns, ``note`` included), unique per run and :class:`~archbench.rows.CellKey`: a cell measured
  again replaces its row. A field added to ``ResultRow`` later becomes a column when a writable store is
  opened; a column the store lacks reads as the field's default;
* ``samples``: ``cell_id``, ``samples_ms`` — the raw samples as one BLOB of little-endian float64, not a
  row per sample: a cell's samples are always written and read together, never queried one by one in
  SQL, and 8 bytes a sample round-trip every float exactly (NaN included) in one row per cell;
* ``profiles`` (schema 2): ``run_id``, ``model``, ``data`` — a profile run's
  :class:`~archbench.results.profiles.ModelProfile` as JSON (per-step samples of every module included);
* ``bandwidth_peaks`` (schema 2): ``run_id``, ``device``, ``threads``, ``copy_gbps``, ``triad_gbps`` — the
  STREAM bandwidth a run measured, beside its compute peaks.

A store of schema 1 is brought to schema 2 (the two tables added) when it is opened for writing; read-only,
it reads as holding no profiles.

Writes are transactions committed at once (``BEGIN IMMEDIATE``, ``synchronous=FULL``), so a killed
process (SIGKILL included) leaves a valid database holding every cell it finished. WAL mode lets readers
and one writer work at once; a writer that finds the database busy waits (``busy_timeout``) and retries
up to :data:`WRITE_DEADLINE_S`, so two runs recording into one file both succeed.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import re
import sqlite3
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from archbench.errors import ECHO_LIMIT, PATH_ECHO_LIMIT, StoreError, StoreNotWritableError, UsageError, quoted
from archbench.locations import (
    create_problem,
    existing_file_problem,
    kernel_fs,
    make_dirs,
    nearest_existing,
    shape_problem,
)
from archbench.results.liveness import INTERRUPTED, owner_state, this_process
from archbench.rows import KEY_FIELDS, REQUIRED_KEY_COLUMNS, CellKey, ResultRow, cell_key

if TYPE_CHECKING:
    from archbench.results.data import ReportData
    from archbench.timing.peak import DevicePeaks

SCHEMA_VERSION = 3  # 2: profiles and bandwidth_peaks; 3: cells are unique per backend too (results.BACKENDS)
APPLICATION_ID = 0x41524342  # "ARCB": this SQLite file is an archbench results store
DEFAULT_DB = Path("reports") / "archbench.db"
DB_ENV = "ARCHBENCH_DB"
BUSY_TIMEOUT_S = 10.0  # sqlite's own wait for a lock held by another process
WRITE_DEADLINE_S = 60.0  # then archbench's retries of a busy write give up
_RECENT_SHOWN = 5

T = TypeVar("T")
_CELL_FIELDS = tuple(f for f in fields(ResultRow) if f.name != "samples_ms")
_SQL_TYPES = {"bool": "INTEGER", "int": "INTEGER", "float": "REAL"}  # every other field is TEXT
_RUN_REF = re.compile(r"^(?:([0-9]+)|latest(?:~([0-9]+))?)$")  # ASCII digits only: '３' is not a run id
_MAX_ID = 2**63 - 1  # SQLite's INTEGER: no run id (or offset) is larger
_OWNER_COLUMNS = ("host", "pid", "pid_token")


def default_db_path() -> Path:
    """``$ARCHBENCH_DB`` when set (and not empty), else ``reports/archbench.db``."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def is_run_ref(text: str) -> bool:
    """Whether ``text`` names a run: an id (``12``), ``latest`` or ``latest~N``."""
    return bool(_RUN_REF.match(str(text).strip()))


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunInfo:
    """One stored run with a summary of its cells (``models`` and ``devices`` in the order measured)."""

    id: int
    started_utc: str
    finished_utc: str | None  # None: still running, or the process was killed
    command: str
    title: str
    out_path: str | None
    planned_cells: int
    env: Mapping[str, Any] = field(hash=False)
    git_commit: str | None
    n_cells: int
    n_ok: int
    models: tuple[str, ...]
    devices: tuple[str, ...]
    state: str = "finished"  # finished | running | interrupted (its process is gone) | unknown (another host)

    @property
    def n_failed(self) -> int:
        return self.n_cells - self.n_ok

    @property
    def torch_version(self) -> str | None:
        return self.env.get("torch")

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)} | {
            "n_failed": self.n_failed}


class Store:
    """An open results store. ``Store.open(path)`` opens it for writing — a file that does not exist yet is
    created by the first write, so a run refused or interrupted before it records anything leaves nothing
    behind, and until then the store reads as empty; ``Store.open(path, readonly=True)`` only reads an
    existing one. Use as a context manager, or ``close()``."""

    def __init__(self, path: Path, connection: sqlite3.Connection | None, *, readonly: bool,
                 busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = path
        self.readonly = readonly
        self._db = connection
        self._busy_timeout_s = busy_timeout_s
        self._columns = tuple(f.name for f in _CELL_FIELDS)  # the file's own, once it is read

    # ------------------------------------------------------------------------------------- opening

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Store:
        """Open the store at ``path``. Raises :class:`StoreError` for a file that is not an archbench store
        (not SQLite, another application's database) or one of a newer schema — such a file is never
        written — or a path that cannot be a file (a folder, or below a file); and, opened for writing,
        :class:`StoreNotWritableError` when the location cannot be written. ``busy_timeout_s``: how long
        sqlite itself waits for a lock another process holds, before archbench's retries take over."""
        path = Path(path)
        if readonly:
            store = cls(path, _connect_readonly(path, busy_timeout_s), readonly=True)
        else:
            _check_location(path)
            store = cls(path, None, readonly=False, busy_timeout_s=busy_timeout_s)
            if not path.exists():
                return store
            store._db = _connect(path, busy_timeout_s)
        try:
            store._check_and_prepare()
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_or_warn(cls, path: str | Path) -> tuple[Store | None, str]:
        """A writable store, or ``(None, why)`` when its location cannot be written: the caller measures
        anyway, keeps its files and shows the warning. Other :class:`StoreError` s propagate (bad file)."""
        try:
            return cls.open(path), ""
        except StoreNotWritableError as exc:
            return None, f"{exc} This run is not recorded in the results store; its results files are written as usual."

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_and_prepare(self) -> None:
        version, application, tables = self._read(_header)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"'{self.path}' was written by a newer archbench (results store schema version {version}; this "
                f"archbench knows version {SCHEMA_VERSION}). It is left untouched: upgrade archbench to use it, or "
                "record into another database file.")
        if application != APPLICATION_ID and tables:
            raise StoreError(
                f"'{self.path}' is an SQLite database of another application (tables: {', '.join(tables[:5])}), "
                "not an archbench results store; archbench does not write into it. Give another database file.")
        if self.readonly:
            if not tables:
                raise StoreError(f"'{self.path}' holds no archbench results (an empty database).")
        else:
            self._retrying(self._db, lambda db: db.execute("PRAGMA journal_mode=WAL"))
            self._transaction(self._db, _create_or_extend_schema)
        self._columns = self._read(lambda db: tuple(r[1] for r in db.execute("PRAGMA table_info(cells)")))

    def _connection(self) -> sqlite3.Connection:
        """The connection to write with: the file (and its folders) created by the first write."""
        if self._db is None:
            _create_location(self.path)
            self._db = _connect(self.path, self._busy_timeout_s)
            try:
                self._check_and_prepare()
            except BaseException:
                self.close()
                self._db = None
                raise
        return self._db

    # -------------------------------------------------------------------------------------- writing

    def begin_run(self, command: str, *, title: str = "", env: Mapping[str, Any], git_commit: str | None = None,
                  out_path: str | Path | None = None, planned_cells: int = 0,
                  report: Mapping[str, Any] | None = None) -> int:
        """Record the start of a run; returns its id (ids only grow: the newest run has the highest).
        ``out_path`` is the results file or folder it writes (stored resolved); ``report`` a compare
        run's report data without rows (:func:`archbench.results.jsonfile.data_to_json`)."""
        owner = this_process()
        values = (utc_now(), command, title, _resolved(out_path), int(planned_cells), _json(env), git_commit,
                  _json(report) if report is not None else None, owner.host, owner.pid, owner.token)
        return self._write(lambda db: db.execute(
            "INSERT INTO runs (started_utc, command, title, out_path, planned_cells, env, git_commit, report, host, pid, "
            "pid_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values).lastrowid)

    def continue_run(self, run_id: int, *, planned_cells: int | None = None,
                     report: Mapping[str, Any] | None = None) -> None:
        """A resumed run goes on under its id: unfinished again, with the new plan and report data if given
        (its start, environment, git commit and peaks stay those of its first part); this process owns it now."""
        owner = this_process()
        self._update_run(run_id, "finished_utc = NULL, planned_cells = coalesce(?, planned_cells), "
                                 "report = coalesce(?, report), host = ?, pid = ?, pid_token = ?",
                         (planned_cells, _json(report) if report is not None else None, owner.host, owner.pid,
                          owner.token))

    def delete_run_if_empty(self, run_id: int) -> bool:
        """Remove ``run_id`` when it holds no cell (a run stopped before its first): nothing of it is lost,
        and history is not cluttered with it. Returns whether it was removed."""
        return bool(self._write(lambda db: db.execute(
            "DELETE FROM runs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM cells WHERE run_id = runs.id)",
            (run_id,)).rowcount))

    def drop_orphans(self, out_path: str | Path) -> int:
        """Remove the runs into ``out_path`` that hold no cell and whose process is gone (killed before its
        first cell): a new run into that place replaces them. Returns how many."""
        def work(db: sqlite3.Connection) -> int:
            records = db.execute("SELECT id, host, pid, pid_token FROM runs WHERE out_path = ? AND finished_utc IS NULL "
                                 "AND NOT EXISTS (SELECT 1 FROM cells WHERE run_id = runs.id)",
                                 (_resolved(out_path),)).fetchall()
            gone = [r[0] for r in records if owner_state(*r[1:]) == INTERRUPTED]
            for run_id in gone:
                db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            return len(gone)

        return self._write(work) if self._db is not None else 0

    def finish_run(self, run_id: int) -> None:
        """The run ended (finished, or stopped by Ctrl-C/SIGTERM with its finished cells recorded)."""
        self._update_run(run_id, "finished_utc = ?", (utc_now(),))

    def record_peak(self, run_id: int, device: str, dtype: str, threads: int, tflops: float) -> None:
        """The device peak (TFLOP/s; NaN: not measurable) the run's ``peak_fraction`` figures use."""
        self._write(lambda db: db.execute(
            "INSERT OR REPLACE INTO device_peaks (run_id, device, dtype, threads, tflops) VALUES (?, ?, ?, ?, ?)",
            (run_id, device, dtype, int(threads), tflops)), run_id)

    def record_bandwidth(self, run_id: int, device: str, threads: int, copy_gbps: float, triad_gbps: float) -> None:
        """The STREAM copy and triad rates (GB/s; NaN: not measurable) a run's roofline uses."""
        self._write(lambda db: db.execute(
            "INSERT OR REPLACE INTO bandwidth_peaks (run_id, device, threads, copy_gbps, triad_gbps) VALUES (?, ?, ?, ?, ?)",
            (run_id, device, int(threads), copy_gbps, triad_gbps)), run_id)

    def add_profile(self, run_id: int, model: str, data: Mapping[str, Any]) -> None:
        """Store a profile run's profile (:meth:`~archbench.results.profiles.ModelProfile.to_dict`)."""
        self._write(lambda db: db.execute("INSERT OR REPLACE INTO profiles (run_id, model, data) VALUES (?, ?, ?)",
                                          (run_id, model, _json(data))), run_id)

    def add_cell(self, run_id: int, row: ResultRow) -> None:
        """Store ``row`` and its raw samples in one transaction, committed before returning; a row of a
        cell the run already holds replaces it."""
        values = [run_id, *(getattr(row, f.name) for f in _CELL_FIELDS)]
        _check_fits(self.path, row)

        def work(db: sqlite3.Connection) -> None:
            (cell_id,) = db.execute(_UPSERT_CELL, values).fetchone()
            db.execute("INSERT OR REPLACE INTO samples (cell_id, samples_ms) VALUES (?, ?)",
                       (cell_id, pack_samples(row.samples_ms)))

        self._write(work, run_id)

    # -------------------------------------------------------------------------------------- reading

    def runs(self, model: str | None = None, device: str | None = None, limit: int | None = None) -> list[RunInfo]:
        """Stored runs, newest first; only those with a cell of ``model`` / on ``device`` when given. A run
        that holds no cell and never finished is left out once its process is gone (killed before its first
        cell: nothing to show)."""
        where, params = [], []
        for column, value in (("model", model), ("device", device)):
            if value is not None:
                where.append(f'EXISTS (SELECT 1 FROM cells c WHERE c.run_id = runs.id AND c."{column}" = ?)')
                params.append(value)
        sql = f"SELECT id FROM runs {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        ids = self._read(lambda db: [r[0] for r in db.execute(sql, params)])
        infos = self._run_infos(ids)
        return [r for r in infos if not (r.n_cells == 0 and r.state == INTERRUPTED)]

    def run_info(self, run_id: int) -> RunInfo:
        infos = self._run_infos([run_id])
        if not infos:
            raise self._unknown_run(str(run_id))
        return infos[0]

    def resolve(self, ref: str | int) -> int:
        """A run id from ``ref``: an id (``12``), ``latest`` or ``latest~N`` (N runs before the latest).
        Raises :class:`StoreError` listing the recent runs when there is no such run."""
        match = _RUN_REF.match(str(ref).strip())
        if not match:
            raise StoreError(f"{quoted(str(ref).strip())} is not a run: expected a run id (e.g. 12), latest, or "
                             "latest~N (N runs before the latest), written with the digits 0-9.")
        found = None
        if match.group(1) is not None:
            run_id = _bounded(match.group(1))
            if run_id <= _MAX_ID:
                found = self._read(lambda db: db.execute("SELECT id FROM runs WHERE id = ?", (run_id,)).fetchone())
        else:
            back = _bounded(match.group(2) or "0")
            if back <= _MAX_ID:
                found = self._read(lambda db: db.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?",
                                                         (back,)).fetchone())
        if found is None:
            raise self._unknown_run(str(ref).strip())
        return int(found[0])

    def rows(self, run_id: int) -> list[ResultRow]:
        """The run's cells in the order they were first measured, raw samples included."""
        present = [f for f in _CELL_FIELDS if f.name in self._columns]
        columns = ", ".join(f'c."{f.name}"' for f in present)
        sql = (f"SELECT {columns}, s.samples_ms, c.id FROM cells c LEFT JOIN samples s ON s.cell_id = c.id "
               "WHERE c.run_id = ? ORDER BY c.id")
        records = self._read(lambda db: db.execute(sql, (run_id,)).fetchall())
        return [self._stored_row(run_id, present, r) for r in records]

    def keys(self, run_id: int) -> set[CellKey]:
        """The cells the run holds."""
        columns = ", ".join(f'"{n}"' for n in KEY_FIELDS if n in self._columns)  # a read-only old store: no backend
        records = self._read(lambda db: db.execute(f"SELECT {columns}, id FROM cells WHERE run_id = ?", (run_id,)).fetchall())
        return {cell_key(*r[:-1]) for r in records}

    def models(self) -> list[str]:
        """Every model the store holds a cell of, sorted."""
        return self._read(lambda db: [r[0] for r in db.execute("SELECT DISTINCT model FROM cells ORDER BY model")])

    def peaks(self, run_id: int) -> dict[tuple[str, str, int], float]:
        """``(device, dtype, threads) -> TFLOP/s`` measured by the run (NaN: could not be measured)."""
        from archbench.results.schemas import PEAK
        from archbench.schemas import validate

        records = self._read(lambda db: db.execute(
            "SELECT device, dtype, threads, tflops FROM device_peaks WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall())
        where = f"the results store '{self.path}', run {run_id}"
        peaks = [validate(PEAK, dict(zip(("device", "dtype", "threads", "tflops"), r)), where, StoreError, "device_peaks")
                 for r in records]
        return {(p["device"], p["dtype"], p["threads"]): p["tflops"] for p in peaks}

    def profile_json(self, run_id: int) -> dict[str, Any] | None:
        """A profile run's stored profile (None for any other run, or a store of schema 1)."""
        if not self._has_table("profiles"):
            return None
        found = self._read(lambda db: db.execute("SELECT data FROM profiles WHERE run_id = ?", (run_id,)).fetchone())
        return json.loads(found[0]) if found else None

    def bandwidth(self, run_id: int) -> dict[tuple[str, int], tuple[float, float]]:
        """``(device, threads) -> (copy GB/s, triad GB/s)`` measured by the run."""
        if not self._has_table("bandwidth_peaks"):
            return {}
        records = self._read(lambda db: db.execute(
            "SELECT device, threads, copy_gbps, triad_gbps FROM bandwidth_peaks WHERE run_id = ?", (run_id,)).fetchall())
        return {(d, int(t)): (_nan_if_null(c), _nan_if_null(tr)) for d, t, c, tr in records}

    def _has_table(self, name: str) -> bool:
        return bool(self._read(lambda db: db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()))

    def latest_run_for(self, out_path: str | Path) -> int | None:
        """The newest run that wrote ``out_path`` (the run a ``--resume`` of that file continues)."""
        found = self._read(lambda db: db.execute("SELECT id FROM runs WHERE out_path = ? ORDER BY id DESC LIMIT 1",
                                                 (_resolved(out_path),)).fetchone())
        return None if found is None else int(found[0])

    def report_json(self, run_id: int) -> dict[str, Any] | None:
        """A compare run's report data without rows (None for a bench run)."""
        from archbench.files import parse_json

        found = self._read(lambda db: db.execute("SELECT report FROM runs WHERE id = ?", (run_id,)).fetchone())
        if not found or not found[0]:
            return None
        where = f"the results store '{self.path}', run {run_id}"
        return parse_json(found[0], f"{where}: report", "a report", StoreError)

    def _stored_row(self, run_id: int, present: list, record: tuple) -> ResultRow:
        """A ``cells`` record (its columns in ``present``, then its samples blob and id) as a row, checked
        against the row's schema: a store is a file anyone can write into."""
        from archbench.results.schemas import sample_blob
        from archbench.rows import RESULT_ROW
        from archbench.schemas import validate

        *values, blob, cell_id = record
        where = f"the results store '{self.path}', run {run_id}"
        row = validate(RESULT_ROW, {f.name: _from_sql(f, v) for f, v in zip(present, values)}, where, StoreError,
                       f"cell {cell_id}")
        samples = validate(sample_blob, blob, where, StoreError, f"cell {cell_id}.samples_ms")
        return ResultRow(**{**row, "samples_ms": unpack_samples(samples)})

    # ------------------------------------------------------------------------------------ internals

    def _run_infos(self, ids: list[int]) -> list[RunInfo]:
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))

        def query(db: sqlite3.Connection) -> tuple[list, list]:
            present = {r[1] for r in db.execute("PRAGMA table_info(runs)")}  # a store of an older archbench lacks some
            owner = ", ".join(c if c in present else "NULL" for c in _OWNER_COLUMNS)
            runs = db.execute("SELECT id, started_utc, finished_utc, command, title, out_path, planned_cells, env, "
                              f"git_commit, {owner} FROM runs WHERE id IN ({marks})", ids).fetchall()
            cells = db.execute(f"SELECT run_id, model, device, count(*), sum(status = 'ok') FROM cells WHERE run_id IN "
                               f"({marks}) GROUP BY run_id, model, device ORDER BY min(id)", ids).fetchall()
            return runs, cells

        runs, cells = self._read(query)
        groups: dict[int, list[tuple]] = {}
        for run_id, *group in cells:
            groups.setdefault(run_id, []).append(tuple(group))
        infos = {r[0]: _run_info(r, groups.get(r[0], []), self.path) for r in runs}
        return [infos[i] for i in ids if i in infos]

    def _unknown_run(self, ref: str) -> StoreError:
        ref = ref if len(ref) <= ECHO_LIMIT else quoted(ref)
        recent = self.runs(limit=_RECENT_SHOWN)
        if not recent:
            return StoreError(f"no run {ref} in '{self.path}': it holds no runs yet.")
        listed = ", ".join(f"{r.id} ({r.started_utc[:16].replace('T', ' ')})" for r in recent)
        return StoreError(f"no run {ref} in '{self.path}'. Recent runs, newest first: {listed}.")

    def _update_run(self, run_id: int, assignments: str, values: tuple) -> None:
        def work(db: sqlite3.Connection) -> None:
            if db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id)).rowcount == 0:
                raise self._unknown_run(str(run_id))

        self._write(work)

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on the store; on an empty schema while the file is not created yet."""
        db = self._db if self._db is not None else _empty_store()
        try:
            return work(db)
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc

    def _write(self, work: Callable[[sqlite3.Connection], T], run_id: int | None = None) -> T:
        if self.readonly:
            raise StoreError(f"'{self.path}' was opened read-only.")
        try:
            return self._transaction(self._connection(), work)
        except OverflowError as exc:  # an integer beyond SQLite's 64 bits (sqlite3 checks it when binding)
            raise StoreError(f"cannot write to the results store '{self.path}': {exc}.") from exc
        except sqlite3.IntegrityError as exc:
            if run_id is not None and "FOREIGN KEY" in str(exc):
                raise self._unknown_run(str(run_id)) from exc
            raise _store_error(self.path, exc) from exc

    def _transaction(self, db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` in one write transaction, committed before returning. ``BEGIN IMMEDIATE`` takes the write
        lock up front, so concurrent writers queue on the busy timeout instead of failing mid-transaction."""

        def transaction(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
                db.execute("COMMIT")
                return result
            except BaseException:
                if db.in_transaction:  # sqlite ends it itself after some errors (disk full, I/O)
                    db.execute("ROLLBACK")
                raise

        return self._retrying(db, transaction)

    def _retrying(self, db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work``, again after a short wait while another process keeps the database busy (beyond sqlite's
        own busy timeout), for up to :data:`WRITE_DEADLINE_S`."""
        deadline = time.monotonic() + WRITE_DEADLINE_S
        delay = 0.01
        while True:
            try:
                return work(db)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise _store_error(self.path, exc) from exc
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from exc
            time.sleep(delay)  # another process holds the write lock: back off, then try again
            delay = min(2 * delay, 0.5)


# ---------------------------------------------------------------------------------------- connecting


def _check_location(path: Path) -> None:
    """``path`` can be a store file, and its folder (or, when missing, the nearest one that exists) can be
    written; nothing is created (but a probe file, removed at once: :mod:`archbench.locations`)."""
    shown = quoted(path, PATH_ECHO_LIMIT)
    if reason := shape_problem(path, sibling_room=len("-journal")):  # sqlite keeps FILE-wal/-shm/-journal beside it
        raise StoreError(f"cannot use {shown} as the results store: {reason}.")
    if path.is_dir():
        raise StoreError(f"{shown} is a folder, not a database file: give a file name such as "
                         f"'{path / DEFAULT_DB.name}'.")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise StoreError(f"cannot create the results store {shown}: '{blocking}' is a file, not a folder.")
    folder = nearest_existing(path.parent)
    if path.exists() and (reason := existing_file_problem(path, try_open=False)):  # unwritable: a warning, below
        raise StoreError(f"cannot use {shown} as the results store: {reason}.")
    if (kind := kernel_fs(folder)) is not None:
        raise StoreError(f"cannot create the results store {shown}: '{folder}' is on the kernel's {kind} file system, "
                         "which holds no files of its own.")
    reason = create_problem(folder)
    if reason:
        raise StoreNotWritableError(f"cannot write the results store {shown}: {reason}.")


def _create_location(path: Path) -> None:
    try:
        make_dirs(path.parent)
    except OSError as exc:
        raise StoreNotWritableError(f"cannot create the results store '{path}': {_os_reason(exc)}.") from exc


def _unwritable_reason(folder: Path) -> str | None:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"'{folder}' is on a read-only file system"
    except OSError:
        return None
    return None if os.access(folder, os.W_OK | os.X_OK) else f"'{folder}' is not writable (permission denied)"


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)  # transactions are explicit
        db.execute("PRAGMA synchronous = FULL")  # a committed cell survives a crash of the machine too
        db.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise _store_error(path, exc) from exc
    return db


def _connect_readonly(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    shown = quoted(path, PATH_ECHO_LIMIT)
    if reason := shape_problem(path):  # a name too long for the file system: no such store, said as such
        raise StoreError(f"cannot read {shown} as a results store: {reason}.")
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError as exc:  # a folder on the way that cannot be searched
        raise StoreError(f"cannot read the results store {shown}: {_os_reason(exc)}.") from None
    if is_dir:
        raise StoreError(f"{shown} is a folder, not a results store file.")
    if not is_file:
        raise StoreError(f"no results store at {shown}: nothing has been recorded there (each bench and compare run "
                         "records into the store).")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_timeout_s,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise _store_error(path, exc) from exc


def _header(db: sqlite3.Connection) -> tuple[int, int, list[str]]:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    application = db.execute("PRAGMA application_id").fetchone()[0]
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return version, application, tables


def _schema() -> list[str]:
    cell_columns = ", ".join(f'"{f.name}" {_SQL_TYPES.get(f.type, "TEXT")}' + (" NOT NULL" if f.name in KEY_FIELDS else "")
                             for f in _CELL_FIELDS)
    key = ", ".join(f'"{n}"' for n in KEY_FIELDS)
    return [
        ("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_utc TEXT NOT NULL, finished_utc TEXT, "
         "command TEXT NOT NULL, title TEXT NOT NULL DEFAULT '', out_path TEXT, planned_cells INTEGER NOT NULL DEFAULT 0, "
         "env TEXT NOT NULL, git_commit TEXT, report TEXT, host TEXT, pid INTEGER, pid_token TEXT)"),
        "CREATE INDEX runs_by_out_path ON runs (out_path)",
        ("CREATE TABLE device_peaks (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE, device TEXT NOT NULL, "
         "dtype TEXT NOT NULL, threads INTEGER NOT NULL, tflops REAL, PRIMARY KEY (run_id, device, dtype, threads))"),
        (f"CREATE TABLE cells (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE, "
         f"{cell_columns}, UNIQUE (run_id, {key}))"),
        ("CREATE TABLE samples (cell_id INTEGER PRIMARY KEY REFERENCES cells (id) ON DELETE CASCADE, "
         "samples_ms BLOB NOT NULL)"),
        *_SCHEMA_2,
    ]


# What schema 2 added to schema 1 (a store of schema 1 gets these when opened for writing).
_SCHEMA_2 = (
    ("CREATE TABLE IF NOT EXISTS profiles (run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE, model TEXT NOT NULL, "
     "data TEXT NOT NULL)"),
    ("CREATE TABLE IF NOT EXISTS bandwidth_peaks (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE, device TEXT NOT NULL, "
     "threads INTEGER NOT NULL, copy_gbps REAL, triad_gbps REAL, PRIMARY KEY (run_id, device, threads))"),
)


def _create_or_extend_schema(db: sqlite3.Connection) -> None:
    """A new file gets the schema; a store of an archbench whose ResultRow had fewer fields gets their columns
    (read back as the fields' defaults where no value was stored). Runs inside the write transaction, so
    two processes creating one store at once create it once."""
    version = _header(db)[0]
    if version == 0:
        for statement in _schema():
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    elif version == 1:  # schema 1 -> 2: the profile tables
        for statement in _SCHEMA_2:
            db.execute(statement)
        db.execute("PRAGMA user_version = 2")
    present_runs = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    for column, kind in zip(_OWNER_COLUMNS, ("TEXT", "INTEGER", "TEXT")):
        if column not in present_runs:  # a store of an archbench that did not record the run's process
            db.execute(f'ALTER TABLE runs ADD COLUMN "{column}" {kind}')
    present = {r[1] for r in db.execute("PRAGMA table_info(cells)")}
    if "backend" not in present:
        _add_backend_to_key(db, present)
        present = {r[1] for r in db.execute("PRAGMA table_info(cells)")}
    for f in _CELL_FIELDS:
        if f.name not in present:
            db.execute(f'ALTER TABLE cells ADD COLUMN "{f.name}" {_SQL_TYPES.get(f.type, "TEXT")}')
    if _header(db)[0] < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _add_backend_to_key(db: sqlite3.Connection, present: set[str]) -> None:
    """A version-1 store's cells are unique without ``backend``: the table is rebuilt with today's schema (SQLite
    cannot change a UNIQUE constraint), its rows copied with ``backend`` from ``compiled`` and their ids kept.
    The samples, whose foreign key would follow the renamed table (and be deleted with it), are set aside in a
    temporary table and put back. One transaction: a failure leaves the version-1 store as it was."""
    schema = {statement.split(" (", 1)[0]: statement for statement in _schema()}
    db.execute("CREATE TEMP TABLE samples_kept AS SELECT cell_id, samples_ms FROM samples")
    db.execute("DROP TABLE samples")
    db.execute("ALTER TABLE cells RENAME TO cells_v1")
    db.execute(schema["CREATE TABLE cells"])
    kept = [f'"{f.name}"' for f in _CELL_FIELDS if f.name in present]
    names = ", ".join(["id", "run_id", *kept])
    db.execute(f"INSERT INTO cells ({names}, \"backend\") SELECT {names}, "
               "CASE WHEN compiled THEN 'compile' ELSE 'eager' END FROM cells_v1")
    db.execute("DROP TABLE cells_v1")
    db.execute(schema["CREATE TABLE samples"])
    db.execute("INSERT INTO samples (cell_id, samples_ms) SELECT cell_id, samples_ms FROM samples_kept")
    db.execute("DROP TABLE temp.samples_kept")


def _upsert_cell() -> str:
    names = [f'"{f.name}"' for f in _CELL_FIELDS]
    key = ", ".join(f'"{n}"' for n in KEY_FIELDS)
    return (f"INSERT INTO cells (run_id, {', '.join(names)}) VALUES (?{', ?' * len(names)}) "
            f"ON CONFLICT (run_id, {key}) DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in names)} RETURNING id")


_UPSERT_CELL = _upsert_cell()


def _run_info(record: tuple, groups: list[tuple], path: Path) -> RunInfo:
    """A ``runs`` record (checked against its schema) with its cells counted per (model, device, cells, ok
    cells), in measured order."""
    from archbench.files import parse_json
    from archbench.results.schemas import RUN
    from archbench.schemas import validate

    where = f"the results store '{path}', run {record[0]}"
    names = ("id", "started_utc", "finished_utc", "command", "title", "out_path", "planned_cells", "env", "git_commit")
    values = dict(zip(names, record))
    host, pid, token = record[len(names):len(names) + 3]
    values["env"] = parse_json(values["env"], f"{where}: env", "an environment", StoreError) if isinstance(
        values["env"], str) else values["env"]
    run = validate(RUN, values, where, StoreError)
    run_id, started, finished, command, title, out_path, planned, env, commit = (run[n] for n in names)
    state = "finished" if finished is not None else owner_state(host, pid, token)
    return RunInfo(run_id, started, finished, command, title or "", out_path, planned or 0, env, commit,
                   n_cells=sum(g[2] for g in groups), n_ok=sum(g[3] for g in groups),
                   models=tuple(dict.fromkeys(g[0] for g in groups)), devices=tuple(dict.fromkeys(g[1] for g in groups)),
                   state=state)


def _bounded(digits: str) -> int:
    """ASCII ``digits`` as an int, any value beyond SQLite's INTEGER as ``_MAX_ID + 1`` (int() refuses 4,300+
    digits)."""
    return int(digits) if len(digits.lstrip("0")) <= len(str(_MAX_ID)) else _MAX_ID + 1


def _check_fits(path: Path, row: ResultRow) -> None:
    """Every integer of ``row`` fits SQLite's INTEGER (signed 64-bit); else a :class:`StoreError` naming the
    field (sqlite3 would raise OverflowError mid-transaction)."""
    for f in _CELL_FIELDS:
        value = getattr(row, f.name)
        if isinstance(value, int) and not -(2**63) <= value <= _MAX_ID:
            raise StoreError(f"cannot store the cell {row.model} {row.mode} batch {quoted(row.batch)} in '{path}': its "
                             f"{f.name} {quoted(value)} does not fit SQLite's 64-bit INTEGER (at most {_MAX_ID:,}).")


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_NOTADB"):
        return StoreError(f"'{path}' is not an SQLite database ({exc}), so not an archbench results store; archbench "
                          "does not write into it. Give another database file.")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR", "SQLITE_FULL")):
        return StoreNotWritableError(f"cannot write the results store '{path}': {exc} ({name}){_location_hint(path)}.")
    if _is_busy(exc):
        return StoreError(f"the results store '{path}' stayed locked by another process for over "
                          f"{WRITE_DEADLINE_S:.0f} s ({exc}).")
    if name.startswith("SQLITE_CORRUPT"):
        return StoreError(f"the results store '{path}' is damaged ({exc}): move it aside to start a new one.")
    return StoreError(f"the results store '{path}': {exc}.")


def _location_hint(path: Path) -> str:
    """Why sqlite could not write, in the file system's words (sqlite only says "readonly" or "unable to open")."""
    reason = _unwritable_reason(path.parent)
    return f" ({reason})" if reason else ""


def _empty_store() -> sqlite3.Connection:
    """An in-memory store with the schema and nothing in it: what a store not created yet reads as."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    _create_or_extend_schema(db)
    return db


# -------------------------------------------------------------------------------------------- values


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def _resolved(path: str | Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _from_sql(f, value: Any) -> Any:
    """A stored value as the ResultRow field's type: NULL is NaN in a float column (sqlite stores NaN as
    NULL), the field's default elsewhere (a column added after the row was stored); 0/1 in a bool column is
    a bool. Other values stay as stored: the row's schema (:data:`~archbench.schemas.RESULT_ROW`) checks them."""
    kind = f.type
    if value is None:
        return math.nan if kind == "float" else f.default
    if kind == "bool" and value in (0, 1):  # sqlite has no booleans: 0/1; anything else fails the row's schema
        return bool(value)
    return value


def _nan_if_null(value: Any) -> float:
    return math.nan if value is None else float(value)


def pack_samples(samples: Iterable[float]) -> bytes:
    """Raw samples as little-endian float64 bytes (exact, NaN included)."""
    values = array("d", samples)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def unpack_samples(blob: bytes | None) -> tuple[float, ...]:
    values = array("d")
    values.frombytes(blob or b"")
    if sys.byteorder == "big":
        values.byteswap()
    return tuple(values)


# ----------------------------------------------------------------------------------------- recording


class StoreRecorder:
    """A sweep listener: on ``cell_finished`` it stores the row (with its raw samples, and the device peaks
    the row was measured against) and then forwards the call; every other callback goes straight to
    ``inner``. :func:`archbench.sweep.run.run_sweep` calls ``cell_finished`` right after the CSV line is
    written with interrupts deferred, so the store and the CSV agree even on SIGTERM. With ``run_id`` None
    nothing is recorded (yet).

    A write that fails mid-run (disk full, a database locked for over a minute, a value SQLite cannot hold) ends
    the recording, not the run: ``failure`` says why and ``inner`` gets a ``warning``; the results file keeps
    every row (:mod:`archbench.results.sinks`: the store and the CSV are the run's two sinks, and a row lost by
    one is kept by the other)."""

    def __init__(self, store: Store, run_id: int | None, inner: Any = None, peaks: DevicePeaks | None = None):
        self.store = store
        self.run_id = run_id
        self.inner = inner
        self.peaks = peaks
        self.failure: str | None = None
        self._recorded_peaks: set[tuple] = set()
        self._recorded_keys: set[CellKey] = set()

    def cell_finished(self, cell: Any, row: ResultRow, index: int, todo: int) -> None:
        self.record(row)
        callback = getattr(self.inner, "cell_finished", None)
        if callback is not None:
            callback(cell, row, index, todo)

    def record(self, row: ResultRow) -> None:
        """Store ``row`` unless an earlier write failed."""
        if self.failure is not None or self.run_id is None:
            return
        try:
            self._record_peaks(row)
            self.store.add_cell(self.run_id, row)
        except StoreError as exc:
            self._fail(exc, "This cell and the next are not recorded in the results store (the results file keeps "
                            "them).")
            return
        self._recorded_keys.add(row.key())

    def keeps_rows(self) -> bool:
        """Whether rows given now are recorded (the sweep asks when its CSV failed: :mod:`archbench.results.sinks`)."""
        return self.failure is None and self.run_id is not None

    def recorded_keys(self) -> set[CellKey]:
        """The cells this recorder stored."""
        return set(self._recorded_keys)

    def _fail(self, exc: StoreError, consequence: str) -> None:
        self.failure = str(exc)
        warn = getattr(self.inner, "warning", None)
        if warn is not None:
            warn(f"{exc} {consequence}")

    def _record_peaks(self, row: ResultRow) -> None:
        """The peaks behind the row's ``peak_fraction`` (its dtype's and fp32's, which decides whether a
        low-precision peak is a ceiling), once each, as measured before the cells."""
        if self.peaks is None:
            return
        for dtype in dict.fromkeys((row.dtype, "fp32")):
            key = self.peaks.key(row.device, dtype, row.threads)
            if key not in self._recorded_peaks and self.peaks.is_measured(row.device, dtype, row.threads):
                self.store.record_peak(self.run_id, row.device, dtype, key[2],
                                       self.peaks.tflops(row.device, dtype, row.threads))
                self._recorded_peaks.add(key)

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(inner, name)


def stored_device_peaks(store: Store, run_id: int) -> DevicePeaks:
    """The CPU peaks ``run_id`` measured, as the :class:`~archbench.timing.peak.DevicePeaks` of the run that
    resumes it, so its new rows' ``peak_fraction`` uses the same ceiling as the old ones. CUDA peaks are
    measured again: their key holds the TF32 settings of the process, which the store does not keep."""
    from archbench.timing.peak import DevicePeaks

    return DevicePeaks(known={(device, dtype, threads, None): tflops
                              for (device, dtype, threads), tflops in store.peaks(run_id).items()
                              if not device.startswith("cuda")})


# ------------------------------------------------------------------------------------------ reports


def run_report_data(store: Store, run_id: int) -> ReportData:
    """The report of a stored run: a compare run's own (study, counts), with the stored rows; a bench run's
    built from its rows (:func:`rows_report_data`)."""
    import dataclasses

    from archbench.results.jsonfile import data_from_json

    info = store.run_info(run_id)
    rows = tuple(store.rows(run_id))
    if not rows:
        raise StoreError(f"run {run_id} in '{store.path}' has no finished cell: there is nothing to report.")
    peaks = {f"{device}/{dtype}": tflops for (device, dtype, _), tflops in store.peaks(run_id).items()}
    date = info.finished_utc or info.started_utc
    stored = store.report_json(run_id)
    if stored is None:
        return rows_report_data(rows, name=f"run-{run_id}", title=info.title or f"{' vs '.join(info.models)} (run {run_id})",
                                environments=(info.env,), peaks_tflops=peaks, command=info.command, date=date,
                                planned_cells=info.planned_cells)
    data = data_from_json(stored, f"the results store '{store.path}', run {run_id}: report")
    return dataclasses.replace(data, rows=rows, peaks_tflops={**data.peaks_tflops, **peaks}, date=date)


def rows_report_data(rows: Iterable[ResultRow], *, name: str, title: str = "", environments=(), peaks_tflops=None,
                     command: str = "", date: str = "", planned_cells: int = 0) -> ReportData:
    """A report of rows that no study file defined (a bench run or CSV): its study is the grid the rows
    span, the reference its first model, and it has no counts (bench does not count the models)."""
    from archbench.parsing import parse_input
    from archbench.results.data import ModelInfo, ReportData
    from archbench.study import Grid, Study, StudyOptions

    rows = tuple(rows)

    def values(name: str) -> tuple:
        return tuple(dict.fromkeys(getattr(r, name) for r in rows))

    first = rows[0]
    models = values("model")
    grid = Grid(devices=values("device"), inputs=tuple(parse_input(i) for i in values("input")),
                batches=tuple(sorted(values("batch"))), modes=values("mode"), dtypes=values("dtype"),
                backends=values("backend"))
    options = StudyOptions(max_time_s=first.max_time_s if math.isfinite(first.max_time_s) else None,
                           precision=first.precision, min_samples=first.min_samples,
                           channels_last=first.channels_last, compiled=first.compiled, threads=first.threads or None)
    infos = tuple(ModelInfo(m, "", "", next(r.input for r in rows if r.model == m)) for m in models)
    study = Study(name, models, grid, options, title=title or " vs ".join(models))
    return ReportData(study, rows, infos, environments=tuple(environments), peaks_tflops=dict(peaks_tflops or {}),
                      command=command, date=date, planned_cells=planned_cells or len(rows))


def is_bench_csv(path: Path) -> bool:
    """Whether ``path`` is to be read as a bench CSV: a file with no report JSON beside it (compare's
    ``results.csv`` has one) and without compare's count columns."""
    from archbench.results.jsonfile import sidecar_path
    from archbench.rows import COUNT_COLUMNS

    return path.is_file() and not sidecar_path(path).is_file() and not set(COUNT_COLUMNS) & set(_csv_header(path))


def bench_csv_report_data(path: Path) -> tuple[ReportData, tuple[str, ...]]:
    """The report of a bench CSV: its rows, with the environments and device peaks bench keeps beside it
    (``FILE.env.json``), and warnings (an unfinished last line, skipped)."""
    from archbench.env.environment import environment_path
    from archbench.rows import read_results_csv

    missing = [c for c in (*REQUIRED_KEY_COLUMNS, "status", "median_ms") if c not in _csv_header(path)]
    if missing:
        raise UsageError(f"'{path}' is not an archbench results CSV (no column(s) {', '.join(missing)}): give the CSV "
                         "of a bench run, the results.csv of a compare report, a report folder or a run of the store.")
    contents = read_results_csv(path)
    if not contents.rows:
        raise UsageError(f"'{path}' holds no rows: there is nothing to report.")
    sessions, env_warning = _bench_sessions(environment_path(path))
    peaks = {key: value for s in sessions for key, value in (s.get("peaks_tflops") or {}).items()}
    environments = tuple({k: v for k, v in s.items() if k != "peaks_tflops"} for s in sessions)
    date = str(sessions[-1].get("date", "")) if sessions else ""
    data = rows_report_data(contents.rows, name=path.stem, environments=environments, peaks_tflops=peaks, date=date)
    return data, (*contents.warnings, *env_warning)


def _csv_header(path: Path) -> list[str]:
    from archbench.files import csv_header

    return csv_header(path)


def _bench_sessions(path: Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The fingerprints bench keeps beside its CSV, one per session that added rows; none, with a warning
    naming the file, when it is there but unreadable (the rows are reported without their environment)."""
    from archbench.files import read_json_file
    from archbench.results.schemas import environment_sessions

    if not path.exists():
        return [], ()
    try:
        return environment_sessions(read_json_file(path, "an environment file")), ()
    except UsageError as exc:
        return [], (f"{exc} The rows are reported without their environment.",)
