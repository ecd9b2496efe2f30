"""Issue 20 items 1, 4, 5 and 9: a write error on one sink never loses a row from the other (a real full
tmpfs, /dev/null, a value SQLite cannot hold); unusable output locations refused up front; one integer
layer (bounds, non-ASCII digits, whitespace); runs killed or stopped before their first cell; long values
echoed short.

Real CLI runs (mnist-cnn, tiny budgets), real file systems (a 64 KiB tmpfs mounted for the test where the
machine allows it), real SQLite files and real processes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from archbench.errors import StoreError, UsageError, quoted
from archbench.outputs import check_writable_file, owned_file
from archbench.parsing import INT64_MAX, parse_input, parse_int, parse_positive_ints, parse_seconds
from archbench.results.sinks import CsvSink
from archbench.results.store import Store
from archbench.rows import ResultRow, read_results_csv
from archbench.sweep.recording import Recording

FAST = ("--max-time", "0.1", "--precision", "0.5")
BENCH = ("bench", "mnist-cnn", "--mode", "infer", *FAST)
HUGE = str(2**63)


def no_traceback(result) -> bool:
    return "Traceback" not in result.output


def row(**changes) -> ResultRow:
    values = dict(model="m", device="cpu", mode="infer", batch=1, input="1x28x28", dtype="fp32", status="ok",
                  median_ms=1.0, n_samples=2, samples_ms=(1.0, 1.0))
    return ResultRow(**{**values, **changes})


# ------------------------------------------------------------------------------------ a full disk


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "64k"):
    """A real tmpfs of ``size`` mounted on ``folder`` (skips where mounting is not permitted)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root and mount permission needed): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave_pages: int) -> None:
    """Fill the file system of ``folder`` but ``leave_pages`` pages of 4 KiB (the lock file takes one)."""
    path = folder / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    os.truncate(path, max(0, path.stat().st_size - 4096 * leave_pages))


@pytest.mark.slow
def test_full_disk_under_the_csv_keeps_every_cell_in_the_store(cli, tmp_path):
    db = tmp_path / "s.db"
    with small_tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave_pages=1)
        out = disk / "r.csv"
        result = cli(*BENCH, "--batch", "1,2", "--out", out, "--db", db)
        assert result.exit_code == 0 and no_traceback(result), result.output
        said = " ".join(result.stderr.split())
        assert f"cannot write the results CSV '{out}': No space left on device (errno 28, ENOSPC)" in said
        assert "kept in the results store only" in said and "Every finished cell is kept in the other place" in said
        assert read_results_csv(out).rows == () and not read_results_csv(out).warnings  # cut back: no half line
    with Store.open(db, readonly=True) as store:
        [info] = store.runs()
        assert info.finished_utc is not None and info.state == "finished"  # the run is closed
        assert [r.batch for r in store.rows(info.id)] == [1, 2] and info.n_ok == 2


@pytest.mark.slow
def test_full_disk_under_csv_and_store_stops_and_exits_1(cli, tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave_pages=1)
        out = disk / "r.csv"
        result = cli(*BENCH, "--batch", "1,2,3", "--out", out, "--db", disk / "s.db")
        assert result.exit_code == 1 and no_traceback(result), result.output
        said = " ".join(result.stderr.split())
        assert "(errno 28, ENOSPC)" in said and "the run stops here" in said
        assert "1 finished cell(s) could not be kept anywhere (mnist-cnn infer batch 1 1x28x28)" in said
        assert "1 cell(s) measured" in said  # stopped after the first: the next two would be lost too
        assert "mnist-cnn" in result.stdout  # its figures are shown


@pytest.mark.slow
def test_no_store_and_a_full_disk_exits_1_naming_path_and_errno(cli, tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave_pages=1)
        out = disk / "r.csv"
        result = cli(*BENCH, "--out", out, "--no-db", "--json")
        assert result.exit_code == 1 and no_traceback(result), result.output
        data = json.loads(result.stdout)
        assert data["lost_cells"] == 1 and len(data["rows"]) == 1
        assert data["write_failures"] == [f"cannot write the results CSV '{out}': No space left on device (errno 28, ENOSPC)"]


def test_a_disk_full_before_anything_is_measured_is_refused_up_front(cli, tmp_path):
    with small_tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave_pages=0)
        result = cli(*BENCH, "--out", disk / "r.csv", "--no-db")
        assert result.exit_code == 2 and no_traceback(result), result.output
        assert "No space left on device (errno 28, ENOSPC)" in " ".join(result.stderr.split())


# ----------------------------------------------------------------------------------- /dev/null, overflow


def test_dev_null_as_out_is_refused_before_measuring_and_records_nothing(cli, tmp_path):
    db = tmp_path / "s.db"
    result = cli(*BENCH, "--out", "/dev/null", "--db", db)
    assert result.exit_code == 2 and no_traceback(result)
    assert "'/dev/null': it is a character device, not a regular file" in result.stderr
    assert not db.exists() and not Path("/dev/null.lock").exists()


def test_a_csv_sink_that_cannot_sync_loses_nothing_the_store_keeps(tmp_path):
    """/dev/null takes the bytes but fsync refuses (EINVAL): the CSV sink fails with the path and errno, the
    store keeps the row, and the run is closed."""
    sink = CsvSink("/dev/null")
    assert sink.append([row()]) is False
    assert str(sink.failure) == "cannot write the results CSV '/dev/null': Invalid argument (errno 22, EINVAL)"
    assert sink.append([row(batch=2)]) is False and [r.batch for r in sink.unwritten] == [1, 2]

    with Store.open(tmp_path / "s.db") as store:
        recording = Recording(store, "c", env={}, out_path="/dev/null", planned_cells=2, resume=False)
        recording.sweep_started(2, 0)
        for r in sink.unwritten:
            recording.record(r)
        recording.finish(sink.unwritten)
        [info] = store.runs()
        assert info.n_cells == 2 and info.finished_utc is not None
        assert recording.recorded_keys() == {r.key() for r in sink.unwritten}


def test_a_value_sqlite_cannot_hold_is_a_store_failure_the_csv_keeps_and_the_run_is_closed(tmp_path):
    warnings = []

    class Listener:
        def warning(self, message):
            warnings.append(message)

    with Store.open(tmp_path / "s.db") as store:
        recording = Recording(store, "c", env={}, out_path=tmp_path / "r.csv", planned_cells=2, resume=False,
                              listener=Listener())
        recording.sweep_started(2, 0)
        recording.record(row(batch=1))
        recording.record(row(batch=2**63))
        assert not recording.keeps_rows() and "does not fit SQLite's 64-bit INTEGER" in recording.failure
        assert "batch '9223372036854775808'" in warnings[0] and "the results file keeps them" in warnings[0]
        recording.finish([row(batch=1), row(batch=2**63)])
        [info] = store.runs()
        assert info.finished_utc is not None and info.n_cells == 1  # closed, holding what it could
    with pytest.raises(StoreError, match="does not fit SQLite's 64-bit INTEGER"):
        with Store.open(tmp_path / "t.db") as store:
            store.add_cell(store.begin_run("c", env={}), row(n_samples=2**64))


# ------------------------------------------------------------------------------- unusable locations


@pytest.mark.parametrize("where", ["/proc/archbench-x.csv", "/sys/archbench-x.csv", "/proc/self/status",
                                   "/proc/sys/vm/drop_caches", "name", "deep"])
def test_unusable_output_locations_are_refused_up_front(cli, tmp_path, where):
    if where == "name":
        where = tmp_path / ("a" * 300 + ".csv")
    elif where == "deep":
        where = tmp_path.joinpath(*["d"] * 3000, "x.csv")
    elif not Path(where).parent.exists():
        pytest.skip(f"no {Path(where).parent} here")
    result = cli(*BENCH, "--out", where, "--no-db")
    assert result.exit_code == 2 and no_traceback(result), result.output
    said = " ".join(result.stderr.split())
    assert said.startswith("error: --out: cannot write results to") and len(said) < 600
    assert any(reason in said for reason in ("kernel's proc", "kernel's sysfs", "allows names of at most",
                                             "allows paths of at most")), said
    assert not list(tmp_path.iterdir())  # nothing created


def test_store_locations_are_checked_the_same_way(cli, tmp_path):
    for db, reason in (("/proc/archbench.db", "kernel's proc file system"), ("/dev/null", "character device"),
                       (tmp_path / ("b" * 300 + ".db"), "allows names of at most")):
        result = cli(*BENCH, "--out", tmp_path / "r.csv", "--db", db)
        assert result.exit_code == 2 and no_traceback(result) and reason in result.stderr, result.output


def test_a_path_thousands_of_folders_deep_is_created_without_recursion(tmp_path):
    """Deeper than Python's recursion limit (Path.mkdir(parents=True) recursed once per level), within
    PATH_MAX. In a RAM file system where there is one: rmdir of 1,100 folders takes seconds on some disks."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    try:
        # Past the recursion limit where PATH_MAX allows (a library imported earlier may have raised the limit).
        depth = min(sys.getrecursionlimit() + 100, (4_000 - len(str(base))) // 2)
        assert depth > 1_000  # deeper than Python's default limit in any case
        deep = base.joinpath(*["d"] * depth, "x.csv")
        with owned_file(check_writable_file(deep)) as path:
            assert path.parent.is_dir()
        assert not (base / "d").exists()  # the folders it created, and left empty, are removed
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------------------ integers


@pytest.mark.parametrize("argv, message", [
    (("--batch", HUGE), f"--batch value '{HUGE}' is too large: at most 9,223,372,036,854,775,807 (2**63 - 1"),
    (("--batch", "1,３"), "--batch value '３' contains the non-ASCII digit '３' (U+FF13): write numbers with the digits 0-9"),
    (("--input", f"{HUGE}x1x1"), "is too large: C×H×W is 9,223,372,036,854,775,808 elements"),
    (("--input", "٣x28x28"), "contains the non-ASCII digit '٣' (U+0663)"),
    (("--threads", str(2**31)), "--threads value '2147483648' is too large: at most 2,147,483,647"),
    (("--max-time", "１"), "contains the non-ASCII digit '１'"),
    (("--max-time", "1_0"), "--max-time '1_0' is not a number of seconds"),
    (("--device", "cuda:٣"), "--device cuda:N value '٣' contains the non-ASCII digit"),
    (("--batch", "9" * 5000), "' (5,000 characters) is too large"),
])
def test_integer_options_are_bounded_and_ascii(cli, tmp_path, argv, message):
    result = cli(*BENCH, *argv, "--out", tmp_path / "r.csv", "--no-db")
    assert result.exit_code == 2 and no_traceback(result), result.output
    said = " ".join(result.stderr.split())
    assert message in said and len(said) < 400, said
    assert not (tmp_path / "r.csv").exists()


def test_surrounding_whitespace_is_accepted_and_inner_forms_are_not():
    assert parse_positive_ints(" 8 , 16 ", "--batch") == [8, 16]
    assert parse_input(" 3 x 64 x 64 ") == (3, 64, 64)
    assert parse_int("\t20\n", "--limit") == 20 and parse_seconds(" 2.5 ", "--max-time") == 2.5
    assert parse_int(str(INT64_MAX), "--batch") == INT64_MAX
    for bad in ("1 0", "+5", "1_000", "0x10", "-1", "", "２０"):
        with pytest.raises(UsageError, match="--limit value"):
            parse_int(bad, "--limit")


def test_run_ids_and_limits_of_any_size_are_messages(cli, tmp_path):
    db = tmp_path / "s.db"
    with Store.open(db) as store:
        store.add_cell(store.begin_run("c", env={}), row())
    for argv in (("report", str(2**64), "--db", db), ("report", f"latest~{2**64}", "--db", db),
                 ("report", "latest~" + "9" * 200, "--db", db), ("diff", str(2**70), "1", "--db", db),
                 ("collect", str(2**64), "--db", db), ("history", "--limit", str(2**64), "--db", db),
                 ("history", "--limit", "２", "--db", db), ("report", "３", "--db", db)):
        result = cli(*argv)
        assert result.exit_code == 2 and no_traceback(result), (argv, result.output)
        assert len(result.stderr) < 800, result.stderr
    assert "no run 18446744073709551616 in" in cli("report", str(2**64), "--db", db).stderr
    assert "too large: at most" in cli("history", "--limit", str(2**64), "--db", db).stderr


def test_quoted_cuts_long_values_and_says_their_length():
    assert quoted("3x64") == "'3x64'"
    assert quoted("a" * 5000) == f"'{'a' * 60}…' (5,000 characters)"


# ------------------------------------------------------------------------------ interrupted runs


def _kill_a_run(db: Path, out: Path, cells: int) -> None:
    """A real process that begins a run into ``db``, records ``cells`` cells and is SIGKILLed."""
    script = textwrap.dedent(f"""
        import os, signal
        from archbench.rows import ResultRow
        from archbench.results.store import Store
        store = Store.open({str(db)!r})
        run = store.begin_run("archbench bench m --out x", env={{}}, out_path={str(out)!r}, planned_cells=3)
        for batch in range(1, {cells} + 1):
            store.add_cell(run, ResultRow(model="m", device="cpu", mode="infer", batch=batch, input="1x28x28",
                                          dtype="fp32", status="ok", median_ms=1.0))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_a_killed_run_reads_as_interrupted_and_one_killed_before_its_first_cell_is_not_listed(cli, tmp_path):
    db = tmp_path / "s.db"
    _kill_a_run(db, tmp_path / "a.csv", cells=2)
    _kill_a_run(db, tmp_path / "b.csv", cells=0)
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert raw.execute("SELECT count(*) FROM runs").fetchone() == (2,)
    result = cli("history", "--db", db, "--json")
    [run] = json.loads(result.stdout)
    assert (run["id"], run["state"], run["n_cells"], run["finished_utc"]) == (1, "interrupted", 2, None)
    table = cli("history", "--db", db)
    assert "interrupted" in " ".join(table.stdout.split()) and "--resume" in " ".join(table.stdout.split())

    with Store.open(db) as store:  # a new run into b.csv replaces the empty one that was killed
        recording = Recording(store, "c", env={}, out_path=tmp_path / "b.csv", planned_cells=1, resume=False)
        recording.sweep_started(1, 0)
        assert recording.run_id == 3 and [r.id for r in store.runs()] == [3, 1]
        with pytest.raises(StoreError, match="no run 2"):
            store.run_info(2)


def test_a_run_stopped_before_its_first_cell_leaves_no_run(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        recording = Recording(store, "c", env={}, out_path=tmp_path / "r.csv", planned_cells=2, resume=False)
        recording.sweep_started(2, 0)
        assert recording.run_id == 1
        recording.finish([], interrupted=True)  # Ctrl-C while the device peak was measured
        assert recording.recorded is None and store.runs() == []
        kept = Recording(store, "c", env={}, out_path=tmp_path / "r.csv", planned_cells=2, resume=False)
        kept.sweep_started(2, 0)
        kept.record(row())
        kept.finish([row()], interrupted=True)  # stopped after one: kept, closed
        [info] = store.runs()
        assert info.n_cells == 1 and info.state == "finished"


def test_resume_of_a_killed_run_takes_it_over(tmp_path):
    db, out = tmp_path / "s.db", tmp_path / "a.csv"
    _kill_a_run(db, out, cells=1)
    with Store.open(db) as store:
        assert store.run_info(1).state == "interrupted"
        recording = Recording(store, "c", env={}, out_path=out, planned_cells=3, resume=True)
        recording.sweep_started(3, 1)
        assert recording.run_id == 1 and store.run_info(1).state == "running"  # this process owns it now
        recording.finish([])
        assert store.run_info(1).state == "finished"


def test_errno_names_are_in_write_failures():
    from archbench.locations import os_reason

    assert os_reason(OSError(errno.ENAMETOOLONG, "File name too long")) == "File name too long (errno 36, ENAMETOOLONG)"
