"""Cells as work units, run-cells shards, and the local worker pool, for real: worker processes pinned to cores,
a worker killed with SIGKILL mid-cell, a coordinator killed and resumed."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from archbench.errors import WorkUnitError
from archbench.execute.workunits import (
    ShardWriter,
    make_work_unit,
    read_shard,
    read_work_unit,
    shard_contents,
    shard_path,
    unit_cells,
    write_work_unit,
)
from archbench.rows import ResultRow, read_rows_csv, row_to_json
from archbench.timing.options import MeasureOptions

FAST = MeasureOptions(max_time_s=0.1)
BLOCKER = '''
import os
import time
from pathlib import Path

from torch import nn


class Blocker(nn.Module):
    """A tiny model whose batch-2 forward waits while the file $ARCHBENCH_TEST_BLOCK exists (at most 60 s)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[0] == 2 and x.device.type != "meta":
            flag = Path(os.environ.get("ARCHBENCH_TEST_BLOCK", "/nonexistent"))
            deadline = time.monotonic() + 60
            while flag.is_file() and time.monotonic() < deadline:
                time.sleep(0.02)
        return self.fc(x.flatten(1)[:, :4])
'''


def _plan(*names, batches=(1, 2), extra_dirs=()):
    from archbench.catalog.refs import resolve_model
    from archbench.sweep.cells import plan_cells

    return plan_cells([resolve_model(n, extra_dirs=extra_dirs) for n in names], ["cpu"], list(batches), None, ["infer"],
                      ["fp32"], threads=1)


# ------------------------------------------------------------------------------------------ work units


def test_a_user_spec_travels_as_data_and_builds_without_its_spec_folder(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "tiny.toml").write_text('name = "tiny-mnist"\nfamily = "mnist-cnn"\ndescription = "x"\ninput = "1x28x28"\n'
                                     "[args]\nnum_classes = 3\n")
    cells = _plan("tiny-mnist", extra_dirs=[str(specs)])
    path = write_work_unit(tmp_path / "w" / "u001.unit.json", make_work_unit(cells, FAST, label="w"))
    shutil.rmtree(specs)

    rebuilt = unit_cells(read_work_unit(path))
    assert [c.key() for c in rebuilt] == [c.key() for c in cells]
    assert rebuilt[0].source == cells[0].source and dict(rebuilt[0].source.args) == {"num_classes": 3}
    assert sum(p.numel() for p in rebuilt[0].source.build("meta").parameters()) < 44_426  # 3 classes, not 10
    assert read_work_unit(path).measure_options() == FAST


def test_a_model_held_in_python_cannot_be_sent_to_another_process():
    from torch import nn

    from archbench.catalog.source import ModuleSource
    from archbench.sweep.cells import plan_cells

    cells = plan_cells([ModuleSource(nn.Linear(2, 2), "lin", (2, 1, 1))], ["cpu"], [1], None, ["infer"], ["fp32"], threads=1)
    with pytest.raises(WorkUnitError, match=r"model 'lin' is a Python object held by this process .*module:attr|mypkg"):
        make_work_unit(cells, FAST)


def test_a_row_round_trips_through_a_shard_line_and_a_cut_line_is_skipped(tmp_path):
    row = ResultRow("m", "cpu@a", "infer", 2, "3x8x8", "fp32", threads=1, n_samples=3, median_ms=1.25, max_time_s=math.inf,
                    samples_ms=(1.0, math.nan, 1.5))
    writer = ShardWriter(tmp_path / "s.shard.jsonl")
    writer.write("row", row=row_to_json(row))
    with writer.path.open("a") as fh:
        fh.write('{"kind": "row", "row": {"model": "cut off')  # a process killed mid-line
    records, offset = read_shard(writer.path)
    (back,) = shard_contents(records).rows
    assert dataclasses.replace(back, samples_ms=()) == dataclasses.replace(row, samples_ms=())
    assert back.samples_ms[0] == 1.0 and math.isnan(back.samples_ms[1]) and back.max_time_s == math.inf
    assert offset < writer.path.stat().st_size  # the unfinished line is left for a later read
    ShardWriter(writer.path).write("end", interrupted=False)  # a new writer cuts the unfinished line first
    assert [r["kind"] for r in read_shard(writer.path)[0]] == ["row", "end"]


def test_run_cells_twice_measures_nothing_the_shard_already_holds(tmp_path, monkeypatch):
    from archbench.execute.worker import run_work_unit

    monkeypatch.chdir(tmp_path)
    path = write_work_unit(tmp_path / "u001.unit.json", make_work_unit(_plan("mnist-cnn"), FAST, label="w"))
    first = run_work_unit(path)
    assert [r.batch for r in first.rows] == [1, 2] and all(r.status == "ok" and r.samples_ms for r in first.rows)
    assert first.peaks and first.peaks[0][:3] == ("cpu", "fp32", 1) and first.ended
    start = first.starts[0]
    assert start["affinity"] == sorted(os.sched_getaffinity(0)) and start["env"]["threads"] == 1

    again = run_work_unit(path)
    assert again.rows == first.rows  # nothing measured again: the same rows, the same samples
    kinds = [r["kind"] for r in read_shard(shard_path(path))[0]]
    assert kinds.count("row") == 2 and kinds.count("start") == 2


# --------------------------------------------------------------------------------------- bad input


def test_more_workers_than_cores_is_refused_before_anything_runs(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cores = len(os.sched_getaffinity(0))
    result = cli("compare", "mnist-cnn", "resnet-cifar-n5", "--mode", "infer", "--batch", "1", "--workers", cores + 1,
                 "--out", tmp_path / "r", "--no-db")
    assert result.exit_code == 2, result.output
    assert f"{cores + 1} worker(s) for CPU cells, and this process may use {cores} core(s)" in result.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_thread_count_above_a_workers_cores_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "s.toml"
    study.write_text('models = ["mnist-cnn"]\n[grid]\nbatches = [1]\nmodes = ["infer"]\n[options]\nthreads = 2\n')
    result = cli("compare", "--study", study, "--workers", 2, "--out", tmp_path / "r", "--no-db")
    assert result.exit_code == 2 and "threads 2 with 2 worker(s): each worker has 1 core(s)" in result.stderr


def test_workers_malformed_and_slurm_options_without_slurm(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["compare", "mnist-cnn", "--mode", "infer", "--batch", "1", "--no-db", "--out", tmp_path / "r"]
    for value in ("0", "x", "1.5", ""):
        result = cli(*base, "--workers", value)
        assert result.exit_code == 2 and "--workers" in result.stderr, (value, result.output)
    result = cli(*base, "--partition", "debug")
    assert result.exit_code == 2 and "--partition applies to Slurm jobs: add --executor slurm" in result.stderr


def test_a_module_source_with_a_worker_pool_is_refused_through_the_api(tmp_path):
    from torch import nn

    from archbench.catalog.source import ModuleSource
    from archbench.execute.pool import LocalPool
    from archbench.runs.compare import run_compare
    from archbench.study import adhoc_study

    study = adhoc_study(["lin"], batches=[1], modes=["infer"], inputs=[(2, 1, 1)])
    with pytest.raises(WorkUnitError, match="cannot be sent to a worker process"):
        run_compare(study, tmp_path / "r", command="x", sources={"lin": ModuleSource(nn.Flatten(), "lin", (2, 1, 1))},
                    executor=LocalPool(1))
    assert not (tmp_path / "r" / "results.partial.json").exists()  # refused before counting or writing anything


# ------------------------------------------------------------------------------------ the local pool


def _study(tmp_path: Path, *models: str, batches=(1, 2), threads: int | None = 1) -> Path:
    (tmp_path / "blocker.py").write_text(BLOCKER)
    items = ", ".join(m if m.startswith("{") else f'"{m}"' for m in models)
    options = f"[options]\nmax_time_s = 0.3\n{f'threads = {threads}' if threads else ''}\n"
    path = tmp_path / "study.toml"
    path.write_text(f"models = [{items}]\n[grid]\nbatches = {list(batches)}\nmodes = [\"infer\"]\n{options}")
    return path


def _shard_records(folder: Path) -> dict[Path, list[dict]]:
    return {p: read_shard(p)[0] for p in sorted(folder.glob("*.shard.jsonl"))}


def _watch(folder: Path, found, timeout_s: float = 120.0):
    """Poll the shards in ``folder`` until ``found(records by shard)`` returns something; return it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        hit = found(_shard_records(folder)) if folder.exists() else None
        if hit:
            return hit
        time.sleep(0.05)  # polling files other processes write; nothing is timed
    raise AssertionError(f"nothing found in {folder} within {timeout_s:g} s")


def _blocked_worker(records_by_shard) -> int | None:
    """The pid of the worker measuring blocker at batch 2 (it waits there while the flag file exists)."""
    for records in records_by_shard.values():
        starts = [r for r in records if r["kind"] == "start"]
        if starts and any(r["kind"] == "started" and r["key"][0] == "blocker" and r["key"][3] == 2 for r in records):
            return starts[-1]["pid"]
    return None


@pytest.mark.slow
def test_two_pinned_workers_give_the_cells_and_counts_of_one_process(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = _study(tmp_path, "mnist-cnn", '{ model = "mnist-cnn", name = "mnist-b" }', batches=(1, 2))
    single = cli("compare", "--study", study, "--out", tmp_path / "one", "--no-db")
    assert single.exit_code == 0, single.output
    pooled = cli("compare", "--study", study, "--workers", 2, "--out", tmp_path / "two", "--no-db")
    assert pooled.exit_code == 0, pooled.output

    one = {r.key(): r for r in read_rows_csv(tmp_path / "one" / "results.csv")}
    two = {r.key(): r for r in read_rows_csv(tmp_path / "two" / "results.csv")}
    assert set(one) == set(two) and len(two) == 4
    assert all(r.status == "ok" for r in two.values())
    assert {k: r.flops_per_step for k, r in one.items()} == {k: r.flops_per_step for k, r in two.items()}
    assert not (tmp_path / "two" / "shards").exists()  # work units and shards go once the report is written

    workers = [e for e in json.loads((tmp_path / "two" / "results.json").read_text())["environments"] if e.get("worker")]
    assert sorted(w["worker"] for w in workers) == ["worker 1", "worker 2"]
    affinities = [w["affinity"] for w in workers]
    assert all(len(a) == 1 for a in affinities) and affinities[0] != affinities[1]  # one core each, not the same
    assert all(w["threads"] == 1 for w in workers)
    samples = json.loads((tmp_path / "two" / "results.json").read_text())["rows"]
    assert all(len(r["samples_ms"]) == r["n_samples"] > 0 for r in samples)


@pytest.mark.slow
def test_a_worker_killed_mid_cell_leaves_error_rows_and_the_others_finish(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flag = tmp_path / "block"
    flag.touch()
    monkeypatch.setenv("ARCHBENCH_TEST_BLOCK", str(flag))
    study = _study(tmp_path, "mnist-cnn", '{ model = "./blocker.py:Blocker", name = "blocker" }', batches=(1, 2, 4))
    out = tmp_path / "r"
    killed: list[int] = []

    def kill_the_blocked_worker() -> None:
        pid = _watch(out / "shards", _blocked_worker)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_blocked_worker, daemon=True)
    killer.start()
    result = cli("compare", "--study", study, "--workers", 2, "--out", out, "--db", tmp_path / "a.db")
    killer.join(timeout=5)
    assert killed and result.exit_code == 0, result.output

    rows = {(r.model, r.batch): r for r in read_rows_csv(out / "results.csv")}
    assert len(rows) == 6
    assert all(rows[("mnist-cnn", b)].status == "ok" for b in (1, 2, 4))  # the other worker went on
    assert rows[("blocker", 1)].status == "ok"  # finished before the kill: kept
    assert rows[("blocker", 2)].status == "error"
    assert f"(pid {killed[0]}) was killed by SIGKILL while measuring this cell" in rows[("blocker", 2)].error
    assert rows[("blocker", 4)].status == "error" and rows[("blocker", 4)].error.startswith("not measured: worker")

    from archbench.results.store import Store

    with Store.open(tmp_path / "a.db", readonly=True) as store:
        stored = {(r.model, r.batch): r for r in store.rows(store.resolve("latest"))}
    assert stored.keys() == rows.keys() and stored[("mnist-cnn", 1)].samples_ms  # streamed into the store, samples too


@pytest.mark.slow
def test_a_resumed_run_after_a_killed_coordinator_measures_nothing_that_finished(cli, tmp_path, monkeypatch):
    flag = tmp_path / "block"
    flag.touch()
    study = _study(tmp_path, "mnist-cnn", '{ model = "./blocker.py:Blocker", name = "blocker" }', batches=(1, 2))
    out, db = tmp_path / "r", tmp_path / "a.db"
    argv = ["compare", "--study", str(study), "--workers", "2", "--out", str(out), "--db", str(db)]
    coordinator = subprocess.Popen([sys.executable, "-m", "archbench", *argv], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env={**os.environ, "ARCHBENCH_TEST_BLOCK": str(flag)})
    try:
        def mnist_done_and_blocker_blocked(by_shard):
            finished = [r for records in by_shard.values() for r in records if r["kind"] == "row"]
            done = {(r["row"]["model"], r["row"]["batch"]) for r in finished}
            return _blocked_worker(by_shard) if {("mnist-cnn", 1), ("mnist-cnn", 2)} <= done else None

        blocked = _watch(out / "shards", mnist_done_and_blocker_blocked)
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(timeout=30)
        _watch(out / "shards", lambda _: not Path(f"/proc/{blocked}").exists())  # the worker follows its coordinator
    finally:
        coordinator.kill()
    before = {(r.model, r.batch): r for records in _shard_records(out / "shards").values()
              for r in shard_contents(records).rows}
    assert {("mnist-cnn", 1), ("mnist-cnn", 2), ("blocker", 1)} <= set(before)
    assert ("blocker", 2) not in before  # it was being measured: not finished

    flag.unlink()
    monkeypatch.chdir(tmp_path)
    resumed = cli(*argv, "--resume")
    assert resumed.exit_code == 0, resumed.output
    data = json.loads((out / "results.json").read_text())
    after = {(r["model"], r["batch"]): r for r in data["rows"]}
    assert len(after) == 4 and all(r["status"] == "ok" for r in after.values())
    for key, row in before.items():  # the very samples measured before the kill: nothing was measured again
        assert tuple(after[key]["samples_ms"]) == row.samples_ms, key

    from archbench.results.store import Store

    with Store.open(db, readonly=True) as store:
        assert len(store.runs()) == 1 and len(store.rows(store.resolve("latest"))) == 4  # one run, continued


# -------------------------------------------------------------------------------- Slurm, without Slurm


def test_slurm_without_submitit_says_which_extra_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "submitit", None)  # what a missing package looks like to `import submitit`
    result = cli("compare", "mnist-cnn", "--mode", "infer", "--batch", "1", "--executor", "slurm", "--no-db")
    assert result.exit_code == 2 and 'pip install "archbench[slurm]"' in result.stderr, result.output


def test_slurm_without_sbatch_on_path_is_refused(cli, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli("compare", "mnist-cnn", "--mode", "infer", "--batch", "1", "--executor", "slurm", "--no-db")
    assert result.exit_code == 2 and "needs `sbatch` on PATH" in result.stderr, result.output


@pytest.mark.parametrize(("table", "said"), [
    ('[targets.a]\npartiton = "debug"\n', "[targets.a]: unknown key 'partiton'. Did you mean 'partition'?"),
    ('[targets.a]\ntime_limit_min = "1h"\n', "[targets.a]: time_limit_min: '1h' is not an integer."),
    ('[executor]\nkind = "kubernetes"\n', "[executor]: kind: 'kubernetes' is not one of local, slurm."),
    ('[executor]\nworkers = 0\n', "[executor]: workers: 0 is neither a positive integer nor \"auto\"."),
    ('[executor]\nkind = "local"\n[targets.a]\npartition = "debug"\n', "[targets.*] run as Slurm jobs"),
])
def test_executor_and_target_tables_are_checked_key_by_key(cli, tmp_path, monkeypatch, table, said):
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "s.toml"
    study.write_text(f'models = ["mnist-cnn"]\n{table}')
    result = cli("compare", "--study", study, "--no-db")
    assert result.exit_code == 2 and said in result.stderr and str(study) in result.stderr, result.output


# ---------------------------------------------------------------------------------- merged reports


@pytest.mark.slow
def test_report_merges_runs_each_source_its_own_device_columns(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "a.db"
    for n in (1, 2):
        ran = cli("bench", "mnist-cnn", "--mode", "infer", "--batch", "1", "--max-time", "0.05", "--threads", "1",
                  "--out", tmp_path / f"b{n}.csv", "--db", db)
        assert ran.exit_code == 0, ran.output
    merged = cli("report", "1", str(tmp_path / "b2.csv"), "--db", db, "--out", tmp_path / "m")
    assert merged.exit_code == 0, merged.output
    rows = read_rows_csv(tmp_path / "m" / "results.csv")
    assert sorted(r.device for r in rows) == ["cpu@b2", "cpu@run1"]  # both measured "cpu": labelled per source
    report = (tmp_path / "m" / "report.md").read_text()
    assert "### cpu@run1 · infer · fp32" in report and "### cpu@b2 · infer · fp32" in report
    assert "| run1 (merged) |" in report and "| b2 (merged) |" in report  # each source's environment
    unknown = cli("report", "1", "77", "--db", db, "--out", tmp_path / "m2")
    assert unknown.exit_code == 2 and "no run 77" in unknown.stderr
