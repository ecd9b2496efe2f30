"""The results store's SQLite file (:mod:`archbench.results.store` reads and writes through it): where it may
live, its schema and the migrations of older schemas, connections, write transactions and their retries,
sqlite's errors in words, and how a row's values are stored.

Tables (schema version :data:`SCHEMA_VERSION` in ``PRAGMA user_version``; ``PRAGMA application_id`` marks
the file as archbench's):

* ``runs``: ``id``, ``started_utc``, ``finished_utc`` (NULL while the run goes on, or after it was
  killed), ``command`` (the command line that reproduces it), ``title``, ``out_path`` (the CSV or report
  folder it wrote; a resumed run is found by it), ``planned_cells``, ``env`` (the environment
  fingerprint, JSON), ``git_commit`` (of the working directory, ``+dirty`` with changes; NULL outside a
  repository), ``report`` (a compare run: its report's data besides the rows, JSON; NULL for bench),
  ``host``, ``pid``, ``pid_token`` (the process writing it: :mod:`archbench.env.liveness`, so a run whose
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

import json
import math
import sqlite3
import sys
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from archbench.errors import PATH_ECHO_LIMIT, StoreError, StoreNotWritableError, quoted
from archbench.locations import (
    brief_os_reason,
    create_problem,
    existing_file_problem,
    kernel_fs,
    make_dirs,
    nearest_existing,
    shape_problem,
    unwritable_reason,
)
from archbench.rows import KEY_FIELDS, ResultRow

SCHEMA_VERSION = 3  # 2: profiles and bandwidth_peaks; 3: cells are unique per backend too (results.BACKENDS)
APPLICATION_ID = 0x41524342  # "ARCB": this SQLite file is an archbench results store
DEFAULT_DB = Path("reports") / "archbench.db"
BUSY_TIMEOUT_S = 10.0  # sqlite's own wait for a lock held by another process
WRITE_DEADLINE_S = 60.0  # then archbench's retries of a busy write give up

T = TypeVar("T")
CELL_FIELDS = tuple(f for f in fields(ResultRow) if f.name != "samples_ms")
_SQL_TYPES = {"bool": "INTEGER", "int": "INTEGER", "float": "REAL"}  # every other field is TEXT
MAX_ID = 2**63 - 1  # SQLite's INTEGER: no run id (or offset) is larger
OWNER_COLUMNS = ("host", "pid", "pid_token")


# ---------------------------------------------------------------------------------------- connecting


def check_location(path: Path) -> None:
    """``path`` can be a store file, and its folder (or, when missing, the nearest one that exists) can be
    written; nothing is created (but a probe file, removed at once: :mod:`archbench.locations`)."""
    shown = quoted(path, PATH_ECHO_LIMIT)
    if reason := shape_problem(path, sibling_room=len("-journal")):  # sqlite keeps FILE-wal/-shm/-journal beside it
        raise StoreError(f"cannot use {shown} as the results store: {reason}.")
    if path.is_dir():
        raise StoreError(f"{shown} is a folder, not a database file: give a file name such as "
                         f"{quoted(path / DEFAULT_DB.name, PATH_ECHO_LIMIT)}.")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise StoreError(f"cannot create the results store {shown}: {quoted(blocking, PATH_ECHO_LIMIT)} is a file, not a folder.")
    folder = nearest_existing(path.parent)
    if path.exists() and (reason := existing_file_problem(path, try_open=False)):  # unwritable: a warning, below
        raise StoreError(f"cannot use {shown} as the results store: {reason}.")
    if (kind := kernel_fs(folder)) is not None:
        raise StoreError(f"cannot create the results store {shown}: {quoted(folder, PATH_ECHO_LIMIT)} is on the kernel's "
                         f"{kind} file system, which holds no files of its own.")
    reason = create_problem(folder)
    if reason:
        raise StoreNotWritableError(f"cannot write the results store {shown}: {reason}.")


def create_location(path: Path) -> None:
    try:
        make_dirs(path.parent)
    except OSError as exc:
        raise StoreNotWritableError(f"cannot create the results store {quoted(path, PATH_ECHO_LIMIT)}: {brief_os_reason(exc)}.") from exc


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)  # transactions are explicit
        db.execute("PRAGMA synchronous = FULL")  # a committed cell survives a crash of the machine too
        db.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise store_error(path, exc) from exc
    return db


def connect_readonly(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    shown = quoted(path, PATH_ECHO_LIMIT)
    if reason := shape_problem(path):  # a name too long for the file system: no such store, said as such
        raise StoreError(f"cannot read {shown} as a results store: {reason}.")
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError as exc:  # a folder on the way that cannot be searched
        raise StoreError(f"cannot read the results store {shown}: {brief_os_reason(exc)}.") from None
    if is_dir:
        raise StoreError(f"{shown} is a folder, not a results store file.")
    if not is_file:
        raise StoreError(f"no results store at {shown}: nothing has been recorded there (each bench and compare run "
                         "records into the store).")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_timeout_s,
                               isolation_level=None)
    except sqlite3.Error as exc:
        raise store_error(path, exc) from exc


def read_header(db: sqlite3.Connection) -> tuple[int, int, list[str]]:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    application = db.execute("PRAGMA application_id").fetchone()[0]
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return version, application, tables


def schema_statements() -> list[str]:
    cell_columns = ", ".join(f'"{f.name}" {_SQL_TYPES.get(f.type, "TEXT")}' + (" NOT NULL" if f.name in KEY_FIELDS else "")
                             for f in CELL_FIELDS)
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


def create_or_extend_schema(db: sqlite3.Connection) -> None:
    """A new file gets the schema; a store of an archbench whose ResultRow had fewer fields gets their columns
    (read back as the fields' defaults where no value was stored). Runs inside the write transaction, so
    two processes creating one store at once create it once."""
    version = read_header(db)[0]
    if version == 0:
        for statement in schema_statements():
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    elif version == 1:  # schema 1 -> 2: the profile tables
        for statement in _SCHEMA_2:
            db.execute(statement)
        db.execute("PRAGMA user_version = 2")
    present_runs = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    for column, kind in zip(OWNER_COLUMNS, ("TEXT", "INTEGER", "TEXT")):
        if column not in present_runs:  # a store of an archbench that did not record the run's process
            db.execute(f'ALTER TABLE runs ADD COLUMN "{column}" {kind}')
    present = {r[1] for r in db.execute("PRAGMA table_info(cells)")}
    if "backend" not in present:
        _add_backend_to_key(db, present)
        present = {r[1] for r in db.execute("PRAGMA table_info(cells)")}
    for f in CELL_FIELDS:
        if f.name not in present:
            db.execute(f'ALTER TABLE cells ADD COLUMN "{f.name}" {_SQL_TYPES.get(f.type, "TEXT")}')
    if read_header(db)[0] < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _add_backend_to_key(db: sqlite3.Connection, present: set[str]) -> None:
    """A version-1 store's cells are unique without ``backend``: the table is rebuilt with today's schema (SQLite
    cannot change a UNIQUE constraint), its rows copied with ``backend`` from ``compiled`` and their ids kept.
    The samples, whose foreign key would follow the renamed table (and be deleted with it), are set aside in a
    temporary table and put back. One transaction: a failure leaves the version-1 store as it was."""
    schema = {statement.split(" (", 1)[0]: statement for statement in schema_statements()}
    db.execute("CREATE TEMP TABLE samples_kept AS SELECT cell_id, samples_ms FROM samples")
    db.execute("DROP TABLE samples")
    db.execute("ALTER TABLE cells RENAME TO cells_v1")
    db.execute(schema["CREATE TABLE cells"])
    kept = [f'"{f.name}"' for f in CELL_FIELDS if f.name in present]
    names = ", ".join(["id", "run_id", *kept])
    db.execute(f"INSERT INTO cells ({names}, \"backend\") SELECT {names}, "
               "CASE WHEN compiled THEN 'compile' ELSE 'eager' END FROM cells_v1")
    db.execute("DROP TABLE cells_v1")
    db.execute(schema["CREATE TABLE samples"])
    db.execute("INSERT INTO samples (cell_id, samples_ms) SELECT cell_id, samples_ms FROM samples_kept")
    db.execute("DROP TABLE temp.samples_kept")


def _upsert_cell() -> str:
    names = [f'"{f.name}"' for f in CELL_FIELDS]
    key = ", ".join(f'"{n}"' for n in KEY_FIELDS)
    return (f"INSERT INTO cells (run_id, {', '.join(names)}) VALUES (?{', ?' * len(names)}) "
            f"ON CONFLICT (run_id, {key}) DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in names)} RETURNING id")


UPSERT_CELL = _upsert_cell()


def check_fits(path: Path, row: ResultRow) -> None:
    """Every integer of ``row`` fits SQLite's INTEGER (signed 64-bit); else a :class:`StoreError` naming the
    field (sqlite3 would raise OverflowError mid-transaction)."""
    for f in CELL_FIELDS:
        value = getattr(row, f.name)
        if isinstance(value, int) and not -(2**63) <= value <= MAX_ID:
            raise StoreError(f"cannot store the cell {row.model} {row.mode} batch {quoted(row.batch)} in "
                             f"{quoted(path, PATH_ECHO_LIMIT)}: its {f.name} {quoted(value)} does not fit SQLite's 64-bit "
                             f"INTEGER (at most {MAX_ID:,}).")


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_NOTADB"):
        return StoreError(f"{quoted(path, PATH_ECHO_LIMIT)} is not an SQLite database ({exc}), so not an archbench "
                          "results store; archbench does not write into it. Give another database file.")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR", "SQLITE_FULL")):
        return StoreNotWritableError(f"cannot write the results store {quoted(path, PATH_ECHO_LIMIT)}: {exc} ({name})"
                                     f"{_location_hint(path)}.")
    if _is_busy(exc):
        return StoreError(f"the results store {quoted(path, PATH_ECHO_LIMIT)} stayed locked by another process for over "
                          f"{WRITE_DEADLINE_S:.0f} s ({exc}).")
    if name.startswith("SQLITE_CORRUPT"):
        return StoreError(f"the results store {quoted(path, PATH_ECHO_LIMIT)} is damaged ({exc}): move it aside to start a new one.")
    return StoreError(f"the results store {quoted(path, PATH_ECHO_LIMIT)}: {exc}.")


def _location_hint(path: Path) -> str:
    """Why sqlite could not write, in the file system's words (sqlite only says "readonly" or "unable to open")."""
    reason = unwritable_reason(path.parent)
    return f" ({reason})" if reason else ""


def empty_store() -> sqlite3.Connection:
    """An in-memory store with the schema and nothing in it: what a store not created yet reads as."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    create_or_extend_schema(db)
    return db


# -------------------------------------------------------------------------------------------- values


def to_json_text(value: Any) -> str:
    return json.dumps(value, default=str)


def resolved_path(path: str | Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def from_sql(f, value: Any) -> Any:
    """A stored value as the ResultRow field's type: NULL is NaN in a float column (sqlite stores NaN as
    NULL), the field's default elsewhere (a column added after the row was stored); 0/1 in a bool column is
    a bool. Other values stay as stored: the row's schema (:data:`~archbench.schemas.RESULT_ROW`) checks them."""
    kind = f.type
    if value is None:
        return math.nan if kind == "float" else f.default
    if kind == "bool" and value in (0, 1):  # sqlite has no booleans: 0/1; anything else fails the row's schema
        return bool(value)
    return value


def nan_if_null(value: Any) -> float:
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


# ------------------------------------------------------------------------------------- transactions


def transaction(path: Path, db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
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

    return retrying(path, db, transaction)

def retrying(path: Path, db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work``, again after a short wait while another process keeps the database busy (beyond sqlite's
    own busy timeout), for up to :data:`WRITE_DEADLINE_S`."""
    deadline = time.monotonic() + WRITE_DEADLINE_S
    delay = 0.01
    while True:
        try:
            return work(db)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise store_error(path, exc) from exc
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise store_error(path, exc) from exc
        time.sleep(delay)  # another process holds the write lock: back off, then try again
        delay = min(2 * delay, 0.5)
