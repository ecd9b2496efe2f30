"""compare on the one-node Slurm of ci/slurm/ through submitit, for real: jobs run and their shards stream into
the run; a job cancelled mid-cell leaves error rows with Slurm's reason while the other finishes; --detach +
collect; targets on two partitions. Skips, saying why, without a Slurm that takes jobs."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from slurm_cluster import require_slurm

from archbench.execute.workunits import read_shard
from archbench.rows import read_rows_csv

pytestmark = pytest.mark.slurm

STUDY = """models = ["mnist-cnn", {{ model = "mnist-cnn", name = "mnist-b" }}{extra_model}]
[grid]
batches = {batches}
modes = ["infer"]
[options]
max_time_s = 0.3
threads = 1
[executor]
exclusive = false  # the one-node cluster has 2 cores: the two 1-CPU jobs run side by side
{targets}"""


@pytest.fixture(autouse=True)
def _slurm(tmp_path, monkeypatch):
    require_slurm()
    pytest.importorskip("submitit")
    monkeypatch.chdir(tmp_path)


def _study(tmp_path: Path, batches=(1, 2), extra_model: str = "", targets: str = "") -> Path:
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(batches=list(batches), extra_model=extra_model, targets=targets))
    return path


def _until(condition, timeout_s: float = 90.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)  # polling jobs and files of other processes; nothing is timed
    raise AssertionError(f"{what} did not happen within {timeout_s:g} s")


@pytest.mark.slow
def test_a_study_runs_as_slurm_jobs_and_streams_into_the_store(cli, tmp_path):
    result = cli("compare", "--study", _study(tmp_path), "--executor", "slurm", "--out", tmp_path / "r",
                 "--db", tmp_path / "a.db")
    assert result.exit_code == 0, result.output
    rows = read_rows_csv(tmp_path / "r" / "results.csv")
    assert sorted((r.model, r.batch) for r in rows) == [("mnist-b", 1), ("mnist-b", 2), ("mnist-cnn", 1), ("mnist-cnn", 2)]
    assert all(r.status == "ok" and r.n_samples >= 5 for r in rows)
    import json

    jobs = {e["slurm_job"] for e in json.loads((tmp_path / "r" / "results.json").read_text())["environments"]
            if e.get("worker")}
    assert len(jobs) == 2 and None not in jobs  # one job per model, each measured inside Slurm

    from archbench.results.store import Store

    with Store.open(tmp_path / "a.db", readonly=True) as store:
        stored = store.rows(store.resolve("latest"))
        assert len(stored) == 4 and all(r.samples_ms for r in stored)
        assert store.peaks(store.resolve("latest"))  # the jobs' device peaks came back with their rows


@pytest.mark.slow
def test_a_cancelled_job_leaves_error_rows_with_slurms_reason_and_the_other_finishes(cli, tmp_path, monkeypatch):
    from test_executors import BLOCKER, _blocked_worker

    (tmp_path / "blocker.py").write_text(BLOCKER)
    flag = tmp_path / "block"
    flag.touch()
    monkeypatch.setenv("ARCHBENCH_TEST_BLOCK", str(flag))  # sbatch passes the environment on to the job
    study = _study(tmp_path, extra_model=', { model = "./blocker.py:Blocker", name = "blocker" }', batches=(1, 2))
    shards = tmp_path / "r" / "shards"
    cancelled: list[str] = []

    def cancel_the_blocked_job() -> None:
        def blocked_job():
            by_shard = {p: read_shard(p)[0] for p in shards.glob("*.shard.jsonl")} if shards.exists() else {}
            pid = _blocked_worker(by_shard)
            starts = [r for records in by_shard.values() for r in records if r["kind"] == "start" and r["pid"] == pid]
            return starts[-1]["slurm_job"] if pid and starts else None

        job = _until(blocked_job, what="the blocker job reaching its batch-2 cell")
        subprocess.run(["scancel", str(job)], check=True)
        cancelled.append(job)

    canceller = threading.Thread(target=cancel_the_blocked_job, daemon=True)
    canceller.start()
    result = cli("compare", "--study", study, "--executor", "slurm", "--out", tmp_path / "r", "--no-db")
    canceller.join(timeout=5)
    assert cancelled and result.exit_code == 0, result.output

    rows = {(r.model, r.batch): r for r in read_rows_csv(tmp_path / "r" / "results.csv")}
    assert len(rows) == 6
    assert all(rows[(m, b)].status == "ok" for m in ("mnist-cnn", "mnist-b") for b in (1, 2))
    assert rows[("blocker", 1)].status == "ok"
    assert rows[("blocker", 2)].status == "error"
    assert f"Slurm job {cancelled[0]} ended (CANCELLED" in rows[("blocker", 2)].error
    assert rows[("blocker", 2)].error.endswith("while measuring this cell")


@pytest.mark.slow
def test_detach_then_collect_gathers_the_jobs_and_writes_the_report_once(cli, tmp_path):
    db = tmp_path / "a.db"
    submitted = cli("compare", "--study", _study(tmp_path, batches=(1,)), "--executor", "slurm", "--detach",
                    "--out", tmp_path / "r", "--db", db)
    assert submitted.exit_code == 0, submitted.output
    run = submitted.stdout.strip()
    assert run.isdigit() and f"archbench collect {run}" in submitted.stderr
    assert "submitted 2 Slurm job(s) for 2 cell(s)" in submitted.stderr
    assert not (tmp_path / "r" / "report.md").exists()

    def collected():
        result = cli("collect", run, "--db", db)
        assert result.exit_code == 0, result.output
        return result if (tmp_path / "r" / "report.md").exists() else None

    _until(collected, what="collect writing the report")
    assert {r.model for r in read_rows_csv(tmp_path / "r" / "results.csv")} == {"mnist-cnn", "mnist-b"}
    again = cli("collect", run, "--db", db)
    assert again.exit_code == 0 and f"run {run} is complete" in again.stderr  # idempotent

    from archbench.results.store import Store

    with Store.open(db, readonly=True) as store:
        assert len(store.rows(int(run))) == 2 and len(store.runs()) == 1
    unknown = cli("collect", "999", "--db", db)
    assert unknown.exit_code == 2 and "no run 999" in unknown.stderr


def test_an_unknown_partition_is_slurms_one_line_before_anything_runs(cli, tmp_path):
    result = cli("compare", "--study", _study(tmp_path), "--executor", "slurm", "--partition", "no-such-partition",
                 "--out", tmp_path / "r", "--no-db")
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "Invalid partition name specified" in message and "Traceback" not in message
    assert len(message.splitlines()) <= 2
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_two_targets_are_two_device_column_sets_of_one_report(cli, tmp_path):
    targets = '[targets.a]\npartition = "debug"\n[targets.b]\npartition = "cpu"\n'
    result = cli("compare", "--study", _study(tmp_path, batches=(1,), targets=targets), "--out", tmp_path / "r", "--no-db")
    assert result.exit_code == 0, result.output
    rows = read_rows_csv(tmp_path / "r" / "results.csv")
    assert sorted((r.device, r.model) for r in rows) == [("cpu@a", "mnist-b"), ("cpu@a", "mnist-cnn"),
                                                         ("cpu@b", "mnist-b"), ("cpu@b", "mnist-cnn")]
    report = (tmp_path / "r" / "report.md").read_text()
    assert "### cpu@a · infer · fp32" in report and "### cpu@b · infer · fp32" in report
    import json

    partitions = {e.get("slurm_partition") for e in json.loads((tmp_path / "r" / "results.json").read_text())["environments"]
                  if e.get("worker")}
    assert partitions == {"debug", "cpu"}
    assert os.environ.get("SLURM_JOB_ID") is None  # the test itself is not a job
