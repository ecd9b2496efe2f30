"""The results store: every run, its cells and their raw samples, in one SQLite file (stdlib ``sqlite3``; its
tables, schema versions and transactions: :mod:`archbench.results.store_file`). :class:`Store` records runs
and reads them back; a run is named by its id, ``latest`` or ``latest~N``.

Writes are transactions committed at once (``BEGIN IMMEDIATE``, ``synchronous=FULL``), so a killed
process (SIGKILL included) leaves a valid database holding every cell it finished. WAL mode lets readers
and one writer work at once; a writer that finds the database busy waits (``busy_timeout``) and retries
up to :data:`~archbench.results.store_file.WRITE_DEADLINE_S`, so two runs recording into one file both succeed.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from archbench.env.liveness import INTERRUPTED, owner_state, this_process
from archbench.errors import ECHO_LIMIT, PATH_ECHO_LIMIT, StoreError, StoreNotWritableError, quoted
from archbench.results.runinfo import RunInfo, run_info_from_record
from archbench.results.store_file import (
    APPLICATION_ID,
    BUSY_TIMEOUT_S,
    CELL_FIELDS,
    DEFAULT_DB,
    MAX_ID,
    OWNER_COLUMNS,
    SCHEMA_VERSION,
    UPSERT_CELL,
    T,
    check_fits,
    check_location,
    connect,
    connect_readonly,
    create_location,
    create_or_extend_schema,
    empty_store,
    from_sql,
    nan_if_null,
    pack_samples,
    read_header,
    resolved_path,
    retrying,
    store_error,
    to_json_text,
    transaction,
    unpack_samples,
)
from archbench.rows import KEY_FIELDS, CellKey, ResultRow, cell_key
from archbench.units import utc_now

__all__ = ["SCHEMA_VERSION", "RunInfo", "Store", "default_db_path", "is_run_ref", "pack_samples"]

DB_ENV = "ARCHBENCH_DB"
_RECENT_SHOWN = 5
_RUN_REF = re.compile(r"^(?:([0-9]+)|latest(?:~([0-9]+))?)$")  # ASCII digits only: '３' is not a run id


def default_db_path() -> Path:
    """``$ARCHBENCH_DB`` when set (and not empty), else ``reports/archbench.db``."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def is_run_ref(text: str) -> bool:
    """Whether ``text`` names a run: an id (``12``), ``latest`` or ``latest~N``."""
    return bool(_RUN_REF.match(str(text).strip()))


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
        self._columns = tuple(f.name for f in CELL_FIELDS)  # the file's own, once it is read

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
            store = cls(path, connect_readonly(path, busy_timeout_s), readonly=True)
        else:
            check_location(path)
            store = cls(path, None, readonly=False, busy_timeout_s=busy_timeout_s)
            if not path.exists():
                return store
            store._db = connect(path, busy_timeout_s)
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
        version, application, tables = self._read(read_header)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{quoted(self.path, PATH_ECHO_LIMIT)} was written by a newer archbench (results store schema version {version}; this "
                f"archbench knows version {SCHEMA_VERSION}). It is left untouched: upgrade archbench to use it, or "
                "record into another database file.")
        if application != APPLICATION_ID and tables:
            raise StoreError(
                f"{quoted(self.path, PATH_ECHO_LIMIT)} is an SQLite database of another application (tables: {', '.join(tables[:5])}), "
                "not an archbench results store; archbench does not write into it. Give another database file.")
        if self.readonly:
            if not tables:
                raise StoreError(f"{quoted(self.path, PATH_ECHO_LIMIT)} holds no archbench results (an empty database).")
        else:
            retrying(self.path, self._db, lambda db: db.execute("PRAGMA journal_mode=WAL"))
            transaction(self.path, self._db, create_or_extend_schema)
        self._columns = self._read(lambda db: tuple(r[1] for r in db.execute("PRAGMA table_info(cells)")))

    def _connection(self) -> sqlite3.Connection:
        """The connection to write with: the file (and its folders) created by the first write."""
        if self._db is None:
            create_location(self.path)
            self._db = connect(self.path, self._busy_timeout_s)
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
        values = (utc_now(), command, title, resolved_path(out_path), int(planned_cells), to_json_text(env), git_commit,
                  to_json_text(report) if report is not None else None, owner.host, owner.pid, owner.token)
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
                         (planned_cells, to_json_text(report) if report is not None else None, owner.host, owner.pid,
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
                                 (resolved_path(out_path),)).fetchall()
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
                                          (run_id, model, to_json_text(data))), run_id)

    def add_cell(self, run_id: int, row: ResultRow) -> None:
        """Store ``row`` and its raw samples in one transaction, committed before returning; a row of a
        cell the run already holds replaces it."""
        values = [run_id, *(getattr(row, f.name) for f in CELL_FIELDS)]
        check_fits(self.path, row)

        def work(db: sqlite3.Connection) -> None:
            (cell_id,) = db.execute(UPSERT_CELL, values).fetchone()
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
            if run_id <= MAX_ID:
                found = self._read(lambda db: db.execute("SELECT id FROM runs WHERE id = ?", (run_id,)).fetchone())
        else:
            back = _bounded(match.group(2) or "0")
            if back <= MAX_ID:
                found = self._read(lambda db: db.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?",
                                                         (back,)).fetchone())
        if found is None:
            raise self._unknown_run(str(ref).strip())
        return int(found[0])

    def rows(self, run_id: int) -> list[ResultRow]:
        """The run's cells in the order they were first measured, raw samples included."""
        present = [f for f in CELL_FIELDS if f.name in self._columns]
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
        where = f"the results store {quoted(self.path, PATH_ECHO_LIMIT)}, run {run_id}"
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
        return {(d, int(t)): (nan_if_null(c), nan_if_null(tr)) for d, t, c, tr in records}

    def _has_table(self, name: str) -> bool:
        return bool(self._read(lambda db: db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()))

    def latest_run_for(self, out_path: str | Path) -> int | None:
        """The newest run that wrote ``out_path`` (the run a ``--resume`` of that file continues)."""
        found = self._read(lambda db: db.execute("SELECT id FROM runs WHERE out_path = ? ORDER BY id DESC LIMIT 1",
                                                 (resolved_path(out_path),)).fetchone())
        return None if found is None else int(found[0])

    def report_json(self, run_id: int) -> dict[str, Any] | None:
        """A compare run's report data without rows (None for a bench run)."""
        from archbench.files import parse_json

        found = self._read(lambda db: db.execute("SELECT report FROM runs WHERE id = ?", (run_id,)).fetchone())
        if not found or not found[0]:
            return None
        where = f"the results store {quoted(self.path, PATH_ECHO_LIMIT)}, run {run_id}"
        return parse_json(found[0], f"{where}: report", "a report", StoreError)

    def _stored_row(self, run_id: int, present: list, record: tuple) -> ResultRow:
        """A ``cells`` record (its columns in ``present``, then its samples blob and id) as a row, checked
        against the row's schema: a store is a file anyone can write into."""
        from archbench.results.schemas import sample_blob
        from archbench.rows import RESULT_ROW
        from archbench.schemas import validate

        *values, blob, cell_id = record
        where = f"the results store {quoted(self.path, PATH_ECHO_LIMIT)}, run {run_id}"
        row = validate(RESULT_ROW, {f.name: from_sql(f, v) for f, v in zip(present, values)}, where, StoreError,
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
            owner = ", ".join(c if c in present else "NULL" for c in OWNER_COLUMNS)
            runs = db.execute("SELECT id, started_utc, finished_utc, command, title, out_path, planned_cells, env, "
                              f"git_commit, {owner} FROM runs WHERE id IN ({marks})", ids).fetchall()
            cells = db.execute(f"SELECT run_id, model, device, count(*), sum(status = 'ok') FROM cells WHERE run_id IN "
                               f"({marks}) GROUP BY run_id, model, device ORDER BY min(id)", ids).fetchall()
            return runs, cells

        runs, cells = self._read(query)
        groups: dict[int, list[tuple]] = {}
        for run_id, *group in cells:
            groups.setdefault(run_id, []).append(tuple(group))
        infos = {r[0]: run_info_from_record(r, groups.get(r[0], []), self.path) for r in runs}
        return [infos[i] for i in ids if i in infos]

    def _unknown_run(self, ref: str) -> StoreError:
        ref = ref if len(ref) <= ECHO_LIMIT else quoted(ref)
        recent = self.runs(limit=_RECENT_SHOWN)
        if not recent:
            return StoreError(f"no run {ref} in {quoted(self.path, PATH_ECHO_LIMIT)}: it holds no runs yet.")
        listed = ", ".join(f"{r.id} ({r.started_utc[:16].replace('T', ' ')})" for r in recent)
        return StoreError(f"no run {ref} in {quoted(self.path, PATH_ECHO_LIMIT)}. Recent runs, newest first: {listed}.")

    def _update_run(self, run_id: int, assignments: str, values: tuple) -> None:
        def work(db: sqlite3.Connection) -> None:
            if db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id)).rowcount == 0:
                raise self._unknown_run(str(run_id))

        self._write(work)

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on the store; on an empty schema while the file is not created yet."""
        db = self._db if self._db is not None else empty_store()
        try:
            return work(db)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc

    def _write(self, work: Callable[[sqlite3.Connection], T], run_id: int | None = None) -> T:
        if self.readonly:
            raise StoreError(f"{quoted(self.path, PATH_ECHO_LIMIT)} was opened read-only.")
        try:
            return transaction(self.path, self._connection(), work)
        except OverflowError as exc:  # an integer beyond SQLite's 64 bits (sqlite3 checks it when binding)
            raise StoreError(f"cannot write to the results store {quoted(self.path, PATH_ECHO_LIMIT)}: {exc}.") from exc
        except sqlite3.IntegrityError as exc:
            if run_id is not None and "FOREIGN KEY" in str(exc):
                raise self._unknown_run(str(run_id)) from exc
            raise store_error(self.path, exc) from exc


def _bounded(digits: str) -> int:
    """ASCII ``digits`` as an int, any value beyond SQLite's INTEGER as ``MAX_ID + 1`` (int() refuses 4,300+
    digits)."""
    return int(digits) if len(digits.lstrip("0")) <= len(str(MAX_ID)) else MAX_ID + 1
