"""The results store (issue 11): every bench and compare run recorded in one SQLite file, with raw samples;
a killed process leaves a valid database; two processes write one database at once; bad files are refused
(exit 2) and read-only locations warned about (exit 0); `history` lists runs and `report` renders from a
run id or a bench CSV.

Real databases, real CLI runs (in process, or as processes where signals and concurrency matter) on
mnist-cnn with tiny budgets; no sleeps as timing (a killed run is polled through its database)."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from archbench.env.git import git_commit
from archbench.errors import StoreError
from archbench.results.store import SCHEMA_VERSION, Store, pack_samples
from archbench.rows import ResultRow, append_rows_csv, read_rows_csv
from tests.conftest import run_subprocess

FAST = ("--max-time", "0.3")
BENCH = ("bench", "mnist-cnn", "--mode", "infer", *FAST)


def same_row(a: ResultRow, b: ResultRow) -> bool:
    """Equal field by field, NaN equal to NaN; raw samples bit for bit."""
    for f in dataclasses.fields(ResultRow):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "samples_ms":
            if pack_samples(x) != pack_samples(y):
                return False
        elif not (x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))):
            return False
    return True


def row(batch: int = 1, **changes) -> ResultRow:
    base = ResultRow("mnist-cnn", "cpu", "infer", batch, "1x28x28", "fp32", threads=2, n_samples=3, median_ms=1.25,
                     ci_low_ms=1.0, ci_high_ms=1.5, max_time_s=math.inf, precision=0.03, min_samples=5,
                     note="FLOPs not counted: x", samples_ms=(1.25, 1.0, 1.5))
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One real bench run recorded into a store: (its --json output, the CSV, the database)."""
    folder = tmp_path_factory.mktemp("bench")
    csv_path, db = folder / "b.csv", folder / "store" / "runs.db"
    result = run_subprocess(*BENCH, "--batch", "1,2", "--out", csv_path, "--db", db, "--json", cwd=folder)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), csv_path, db


# ------------------------------------------------------------------------------------------ round trip


@pytest.mark.slow
def test_a_bench_run_is_stored_with_every_row_and_raw_sample(bench_run):
    output, csv_path, db = bench_run
    assert output["store"] == {"db": str(db), "run_id": 1}
    with Store.open(db, readonly=True) as store:
        [info] = store.runs()
        stored = store.rows(1)
        peaks = store.peaks(1)
    measured = [ResultRow(**{**r, "samples_ms": tuple(r["samples_ms"])}
                          | {k: math.nan for k, v in r.items() if v is None}) for r in output["rows"]]
    assert len(stored) == 2 and all(same_row(a, b) for a, b in zip(stored, measured))
    assert all(len(r.samples_ms) == r.n_samples >= 5 for r in stored)
    assert all(same_row(dataclasses.replace(a, samples_ms=()), b) for a, b in zip(stored, read_rows_csv(csv_path)))
    assert (info.id, info.n_cells, info.n_ok, info.models, info.devices) == (1, 2, 2, ("mnist-cnn",), ("cpu",))
    assert info.finished_utc is not None and info.planned_cells == 2
    assert info.command.startswith("archbench bench mnist-cnn") and f"--out {csv_path}" in info.command
    assert info.env == output["environment"] and info.out_path == str(csv_path.resolve())
    threads = stored[0].threads
    assert peaks == {("cpu", "fp32", threads): pytest.approx(output["peaks_tflops"]["cpu/fp32"])}


def test_rows_round_trip_exactly_with_nan_inf_and_every_status(tmp_path):
    rows = [row(1, samples_ms=(1.0, math.nan, 2.5e-7, math.inf)),
            row(2, status="oom", error="out of memory", note="", n_samples=0, median_ms=math.nan, samples_ms=()),
            row(3, noisy=True, under_load=True, load_ratio=2.0, channels_last=True, compiled=True, compile_s=1.5)]
    with Store.open(tmp_path / "s.db") as store:
        run_id = store.begin_run("archbench bench mnist-cnn", env={"torch": "x"})
        for r in rows:
            store.add_cell(run_id, r)
        store.add_cell(run_id, dataclasses.replace(rows[0], median_ms=9.0))  # measured again: replaces
    with Store.open(tmp_path / "s.db", readonly=True) as store:
        stored = store.rows(run_id)
    assert [r.batch for r in stored] == [1, 2, 3]  # first-measured order kept
    assert same_row(stored[0], dataclasses.replace(rows[0], median_ms=9.0))
    assert all(same_row(a, b) for a, b in zip(stored[1:], rows[1:]))


def test_a_column_added_to_result_row_later_is_added_to_an_older_store(tmp_path):
    db = tmp_path / "old.db"
    with Store.open(db) as store:
        run_id = store.begin_run("c", env={})
        store.add_cell(run_id, row())
    with sqlite3.connect(db) as raw:  # a store written before ResultRow had `note`
        raw.execute('ALTER TABLE cells DROP COLUMN "note"')
    with Store.open(db, readonly=True) as store:
        assert store.rows(run_id)[0].note == ""  # the field's default where nothing was stored
    with Store.open(db) as store:
        store.add_cell(run_id, row(2))
        assert [r.note for r in store.rows(run_id)] == ["", "FLOPs not counted: x"]


def test_resolve_latest_and_unknown_runs(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        with pytest.raises(StoreError, match="holds no runs yet"):
            store.resolve("latest")
        ids = [store.begin_run(f"run {i}", env={}) for i in range(3)]
        assert (store.resolve("latest"), store.resolve("latest~2"), store.resolve("2"), store.resolve(3)) == (3, 1, 2, 3)
        with pytest.raises(StoreError, match=r"no run 7 in .*Recent runs, newest first: 3 \(.*\), 2 \(.*\), 1 "):
            store.resolve("7")
        with pytest.raises(StoreError, match="no run latest~3"):
            store.resolve("latest~3")
        with pytest.raises(StoreError, match="'lastest' is not a run: expected a run id"):
            store.resolve("lastest")
        with pytest.raises(StoreError, match="no run 42"):
            store.add_cell(42, row())
    assert ids == [1, 2, 3]


# --------------------------------------------------------------------------------- killed and concurrent


def _wait_for_cells(db: Path, n: int, proc: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as raw:
                    if raw.execute("SELECT count(*) FROM cells").fetchone()[0] >= n:
                        return
            except sqlite3.Error:
                pass  # the schema is not there yet
        time.sleep(0.05)  # polling a database another process writes; no timing is asserted
    raise AssertionError(f"{db} did not get {n} cells (process exit code {proc.poll()})")


@pytest.mark.slow
def test_sigkill_mid_sweep_leaves_every_finished_cell_and_resume_reuses_the_stored_peak(tmp_path):
    db, out = tmp_path / "x.db", tmp_path / "x.csv"
    argv = ["bench", "mnist-cnn", "--batch", "1,2,3,4,5,6", *FAST, "--out", str(out), "--db", str(db)]
    proc = subprocess.Popen([sys.executable, "-m", "archbench", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _wait_for_cells(db, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Store.open(db, readonly=True) as store:
        [info] = store.runs()
        stored = store.rows(info.id)
        peaks = store.peaks(info.id)
    csv_keys = [r.key() for r in read_rows_csv(out)]
    assert info.finished_utc is None and 2 <= len(stored) < 12
    assert [r.key() for r in stored] == csv_keys[:len(stored)]  # the CSV may hold one more: killed between the two
    assert len(csv_keys) - len(stored) <= 1
    assert all(r.status == "ok" and len(r.samples_ms) == r.n_samples >= 5 for r in stored)

    resumed = run_subprocess(*argv, "--resume", cwd=tmp_path)
    assert resumed.exit_code == 0, resumed.stderr
    assert f"stored as run {info.id} in {db}" in resumed.stderr  # the same run goes on
    with Store.open(db, readonly=True) as store:
        [after] = store.runs()
        rows = store.rows(info.id)
        assert store.peaks(info.id) == peaks
    assert after.finished_utc is not None and after.n_cells == 12
    assert sorted(r.key() for r in rows) == sorted(r.key() for r in read_rows_csv(out))
    [(_, peak)] = peaks.items()
    for r in rows:  # old and new rows against the one stored peak
        assert r.peak_fraction == pytest.approx(r.achieved_tflops / peak, rel=1e-4), r


@pytest.mark.slow
def test_two_bench_processes_record_into_one_database(tmp_path):
    db = tmp_path / "shared.db"
    procs = [subprocess.Popen([sys.executable, "-m", "archbench", *BENCH, "--batch", "1,2,3", "--out", str(tmp_path / f"{n}.csv"),
                               "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for n in ("a", "b")]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    with Store.open(db, readonly=True) as store:
        runs = store.runs()
        assert sorted(r.id for r in runs) == [1, 2]
        for info in runs:
            assert info.n_ok == 3 and info.finished_utc is not None
            assert [r.batch for r in store.rows(info.id)] == [1, 2, 3]


def test_a_write_waits_while_another_process_holds_the_database(tmp_path):
    """A writer that finds the database locked waits and retries (past sqlite's own busy timeout) instead of
    failing: the lock is held by another connection until the writer is seen waiting."""
    db = tmp_path / "s.db"
    with Store.open(db) as store:
        run_id = store.begin_run("c", env={})
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    errors: list[BaseException] = []

    def write() -> None:
        try:  # sqlite's own wait gives up at once: archbench's retries must carry the write
            with Store.open(db, busy_timeout_s=0.05) as writer:
                writer.add_cell(run_id, row())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=write)
    try:
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()  # still waiting for the lock, not failed
    finally:
        holder.execute("COMMIT")
        holder.close()
        thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    with Store.open(db, readonly=True) as store:
        assert len(store.rows(run_id)) == 1


# ----------------------------------------------------------------------------------------------- bad files


def test_a_file_that_is_not_sqlite_is_refused_before_measuring(cli, tmp_path):
    db, out = tmp_path / "notes.db", tmp_path / "r.csv"
    db.write_text("my notes, not a database\n")
    for argv in ((*BENCH, "--out", out, "--db", db), ("history", "--db", db), ("report", "latest", "--db", db)):
        result = cli(*argv)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert f"'{db}' is not an SQLite database" in result.stderr and "archbench does not write into it" in result.stderr
    assert "--no-db" in cli(*BENCH, "--out", out, "--db", db).stderr  # the CLI's hint, for a run
    assert not out.exists() and db.read_text() == "my notes, not a database\n"


def test_a_store_of_a_newer_schema_is_refused_and_left_untouched(cli, tmp_path):
    db, out = tmp_path / "new.db", tmp_path / "r.csv"
    with Store.open(db):
        pass
    with sqlite3.connect(db) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    result = cli(*BENCH, "--out", out, "--db", db)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"'{db}' was written by a newer archbench (results store schema version {SCHEMA_VERSION + 1}; this " \
           f"archbench knows version {SCHEMA_VERSION})" in result.stderr
    assert not out.exists() and db.read_bytes() == before
    assert cli("history", "--db", db).exit_code == 2


def test_another_applications_database_is_refused(tmp_path):
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as raw:
        raw.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(StoreError, match="an SQLite database of another application \\(tables: customers\\)"):
        Store.open(db)


@pytest.mark.slow
def test_db_and_no_db_options(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(*BENCH, "--out", "a.csv", "--no-db").exit_code == 0
    assert not (tmp_path / "reports").exists()
    monkeypatch.setenv("ARCHBENCH_DB", str(tmp_path / "env.db"))
    result = cli(*BENCH, "--out", "b.csv")
    assert result.exit_code == 0 and f"stored as run 1 in {tmp_path / 'env.db'}" in result.stderr
    monkeypatch.delenv("ARCHBENCH_DB")
    result = cli(*BENCH, "--out", "c.csv")
    assert result.exit_code == 0 and "stored as run 1 in reports/archbench.db" in result.stderr
    refused = cli(*BENCH, "--out", "d.csv", "--db", "x.db", "--no-db")
    assert refused.exit_code == 2 and "--db and --no-db contradict each other" in refused.stderr


def test_a_run_refused_before_measuring_leaves_no_store_behind(cli, tmp_path):
    out, db = tmp_path / "r.csv", tmp_path / "new" / "s.db"
    append_rows_csv(out, [row()])  # another sweep's results
    result = cli(*BENCH, "--out", out, "--db", db)
    assert result.exit_code == 2 and "already holds results" in result.stderr
    assert not (tmp_path / "new").exists()  # the store is created by its first run


def _read_only_run(folder: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m archbench ARGS`` with ``folder`` bind-mounted read-only (which root cannot write either)."""
    probe = subprocess.run(["unshare", "--mount", "--", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("cannot create a mount namespace here (unshare --mount) for a read-only folder")
    script = 'mount --bind -o ro "$1" "$1" || exit 99; cd "$2" && shift 2 && exec "$@"'
    proc = subprocess.run(["unshare", "--mount", "--", "sh", "-c", script, "sh", str(folder), str(cwd), sys.executable,
                           "-m", "archbench", *args], capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode == 99:
        pytest.skip("cannot bind-mount a folder read-only here")
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "existing-store"])
def test_a_read_only_store_location_is_measured_anyway_with_a_warning(tmp_path, existing):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / ("archbench.db" if existing else "sub/archbench.db")
    if existing:
        with Store.open(db) as store:
            store.begin_run("earlier", env={})
    proc = _read_only_run(folder, tmp_path, *BENCH, "--out", str(tmp_path / "r.csv"), "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "read-only file system" in proc.stderr and str(db) in proc.stderr
    assert "not recorded in the results store" in proc.stderr and "stored as run" not in proc.stderr
    assert [r.status for r in read_rows_csv(tmp_path / "r.csv")] == ["ok"]
    if existing:
        with Store.open(db, readonly=True) as store:
            assert [r.command for r in store.runs()] == ["earlier"]


# ------------------------------------------------------------------------------------ history and report


def test_history_json_table_and_filters(cli, bench_run):
    _, _, db = bench_run
    result = cli("history", "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    [run] = json.loads(result.stdout)
    assert (run["id"], run["models"], run["devices"], run["n_cells"], run["n_ok"], run["n_failed"]) == \
        (1, ["mnist-cnn"], ["cpu"], 2, 2, 0)
    assert run["env"]["torch"] and run["started_utc"] and run["command"].startswith("archbench bench mnist-cnn")
    table = cli("history", "mnist-cnn", "--db", db, "--device", "cpu")
    assert table.exit_code == 0 and "bench mnist-cnn" in table.stdout and "2 ok" in table.stdout
    assert json.loads(cli("history", "--db", db, "--device", "cuda", "--json").stdout) == []
    unknown = cli("history", "resnet-nope", "--db", db)
    assert unknown.exit_code == 2 and "no run in" in unknown.stderr and "Models in the store: mnist-cnn" in unknown.stderr
    missing = cli("history", "--db", db.with_name("none.db"))
    assert missing.exit_code == 2 and "no results store at" in missing.stderr


def test_report_from_a_bench_csv_and_from_a_run_id(cli, bench_run, tmp_path):
    output, csv_path, db = bench_run
    medians = [r["median_ms"] for r in output["rows"]]
    from archbench.units import fmt_ms

    from_run = cli("report", "latest", "--db", db, "--out", tmp_path / "from-run")
    from_csv = cli("report", csv_path, "--out", tmp_path / "from-csv")
    for result, folder in ((from_run, tmp_path / "from-run"), (from_csv, tmp_path / "from-csv")):
        assert result.exit_code == 0, result.output
        text = (folder / "report.md").read_text()
        assert "### cpu · infer · fp32" in text and all(f"{fmt_ms(m)} ms" in text for m in medians)
        assert [r.median_ms for r in read_rows_csv(folder / "results.csv")] == medians
    assert "(run 1)" in (tmp_path / "from-run" / "report.md").read_text().splitlines()[0]
    default = cli("report", csv_path)  # beside the CSV, in a folder named after it
    assert default.exit_code == 0 and (csv_path.with_suffix("") / "report.md").exists()
    unknown = cli("report", "7", "--db", db, "--out", tmp_path / "x")
    assert unknown.exit_code == 2 and "no run 7" in unknown.stderr and "Recent runs, newest first: 1" in unknown.stderr


@pytest.mark.slow
def test_compare_is_recorded_with_its_counts_and_reports_from_the_store(cli, tmp_path):
    db = tmp_path / "s.db"
    result = cli("compare", "mnist-cnn", "resnet-cifar-n5", "--mode", "infer", "--batch", "1", *FAST,
                 "--out", tmp_path / "cmp", "--db", db)
    assert result.exit_code == 0, result.output
    assert f"stored as run 1 in {db}" in result.stderr
    with Store.open(db, readonly=True) as store:
        [info] = store.runs()
        stored = store.rows(1)
    written = json.loads((tmp_path / "cmp" / "results.json").read_text())["rows"]
    assert info.title == "mnist-cnn vs resnet-cifar-n5" and info.n_ok == 2
    assert [r.samples_ms for r in stored] == [tuple(r["samples_ms"]) for r in written]
    again = cli("report", "1", "--db", db, "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    original = (tmp_path / "cmp" / "report.md").read_text()
    rendered = (tmp_path / "again" / "report.md").read_text()
    models = next(line for line in original.splitlines() if line.startswith("| `mnist-cnn` | "))
    assert models in rendered  # the counts were stored with the run


# ------------------------------------------------------------------------------------------------- git


def test_git_commit_of_the_working_directory(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    assert git_commit(tmp_path) is None  # not a repository
    git("init", "-q")
    assert git_commit(tmp_path) is None  # no commit yet
    (tmp_path / "model.py").write_text("x = 1\n")
    git("add", "model.py")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    assert git_commit(tmp_path) == head
    (tmp_path / "model.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "+dirty"
