"""Where a run's cells are measured: in this process, in a pool of local worker processes, or as Slurm jobs.

Every executor has the contract of :func:`archbench.sweep.run.run_sweep` — ``run(cells, out_csv, resume=,
options=, listener=, caches=, interleave=, work_dir=)`` returns a :class:`~archbench.sweep.run.SweepResult`,
each finished row is appended to ``out_csv`` and given to the listener (``cell_finished``) as it arrives —
so the store, the progress bar and resume work the same everywhere.

* :class:`LocalExecutor` measures in this process (``run_sweep`` itself).
* :class:`~archbench.execute.pool.LocalPool` spreads the cells over N worker processes (``python -m archbench run-cells UNIT``), each
  pinned to its own cores (``os.sched_setaffinity``; the cells' thread count = cores per worker) or, for CUDA
  cells, to its own GPU (``CUDA_VISIBLE_DEVICES``). The cells of one model stay in one worker.
* :class:`~archbench.execute.slurm.SlurmExecutor` submits one job per model (and target) through submitit.

The out-of-process executors write each group of cells as a work unit (:mod:`archbench.execute.workunits`)
into ``work_dir`` and read the shards the workers append to, as they grow. A worker that dies (SIGKILL, a
segfault, the kernel's OOM killer, a cancelled Slurm job) turns its unfinished cells into error rows with
the reason; the other workers go on. Shards already in ``work_dir`` (a coordinator that was killed) are read
first, so a resumed run re-measures nothing that finished. This module holds the settings, the in-process
executor and what the out-of-process ones share (the collector of shards); :mod:`archbench.execute.worker` is
the other side, the process that measures a work unit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.errors import UsageError
from archbench.execute.workunits import ShardContents, WorkUnit, check_portable, read_shard, shard_contents, shard_path
from archbench.interrupts import interrupts_deferred
from archbench.listeners import notify
from archbench.results.sinks import CsvSink
from archbench.rows import CellKey, ResultRow, check_same_sweep, rows_to_resume
from archbench.study import SLURM_KEYS, SlurmOptions
from archbench.sweep.cells import split_target
from archbench.timing.options import MeasureOptions

POLL_S = 0.2  # how often the coordinator reads the shards and looks at its workers
SLURM_STATE_EVERY_S = 3.0  # how often Slurm is asked (sacct) about jobs whose shard has not ended
STOP_GRACE_S = 15.0  # a stopped worker's time to write its end before it is killed
MAX_REQUEUES = 1  # a preempted or timed-out job is requeued once
WORK_DIR_SUFFIX = ".shards"


class ExecutorError(UsageError):
    """An executor that cannot run here (no submitit, no sbatch, more workers than devices) or that Slurm
    refused."""


# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class ExecutorSettings:
    """Which executor and how: ``kind`` (``local`` or ``slurm``), ``workers`` (local: ``None`` measures in
    this process, a number or ``"auto"`` starts a pool), the Slurm options, the targets (name -> Slurm
    options of that target, each run as its own set of jobs) and ``detach`` (submit and return)."""

    kind: str = "local"
    workers: int | str | None = None
    slurm: SlurmOptions = SlurmOptions()
    targets: Mapping[str, SlurmOptions] = field(default_factory=dict, hash=False)
    detach: bool = False


def make_executor(settings: ExecutorSettings):
    """The executor ``settings`` describe (Slurm's requirements are checked now, before anything runs)."""
    if settings.kind == "slurm":
        from archbench.execute.slurm import SlurmExecutor

        return SlurmExecutor(settings.slurm, detach=settings.detach, targets=settings.targets)
    if settings.targets:
        raise ExecutorError(f"targets ({', '.join(settings.targets)}) run as Slurm jobs: a target is a partition, "
                            "constraint or other job options of a cluster; with the local executor there is one target, "
                            "this machine.")
    if settings.detach:
        raise ExecutorError("detaching submits the cells as Slurm jobs and returns; the local executor measures "
                            "while it runs and cannot detach.")
    if settings.workers is None:
        return LocalExecutor()
    from archbench.execute.pool import LocalPool

    return LocalPool(settings.workers)


def default_work_dir(out_csv: str | Path) -> Path:
    """Where a bench CSV's work units and shards go: ``FILE.shards/`` beside ``FILE.csv``."""
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.stem + WORK_DIR_SUFFIX)


# ------------------------------------------------------------------------------------------ in process


class LocalExecutor:
    """This process measures every cell (:func:`archbench.sweep.run.run_sweep`)."""

    threads: int | None = None  # the cells' thread count is the caller's
    jobs: tuple[str, ...] = ()
    environments: tuple[dict[str, Any], ...] = ()

    def check(self, cells: Sequence[Any]) -> None:
        """Nothing to check: any cell runs in this process."""

    def run(self, cells, out_csv, *, resume: bool, options: MeasureOptions = MeasureOptions(), listener: Any = None,
            caches=None, interleave=None, work_dir: str | Path | None = None):
        from archbench.sweep.run import run_sweep

        return run_sweep(cells, out_csv, resume=resume, options=options, listener=listener, caches=caches,
                         interleave=interleave)


# --------------------------------------------------------------------------------- streaming results


class Collector:
    """The coordinator's side of the shards: reads what they gained since the last look, appends each new
    row of a planned cell to the run's CSV (interrupts deferred: never half a line) and hands it to the
    listener; device peaks the workers measured become the run's (the first measurement of a peak wins, and
    every row's ``peak_fraction`` is taken against it)."""

    def __init__(self, cells: Sequence[Any], out_csv: Path, done: Mapping[CellKey, ResultRow], options: MeasureOptions,
                 listener: Any, caches):
        self.cells = {c.key(): c for c in cells}
        self.out_csv, self.options, self.listener, self.caches = out_csv, options, listener, caches
        self.csv = CsvSink(out_csv)  # a write error leaves the row in its shard and the store (archbench.results.sinks)
        self.done: dict[CellKey, ResultRow] = dict(done)
        self.todo = sum(1 for key in self.cells if key not in self.done)
        self.measured: list[ResultRow] = []
        self.peaks_used: dict[str, float] = {}
        self._offsets: dict[Path, int] = {}
        self._records: dict[Path, list] = {}
        self._warned: set[str] = set()

    def read(self, shard: Path) -> ShardContents:
        records, self._offsets[shard] = read_shard(shard, self._offsets.get(shard, 0))
        self._records.setdefault(shard, []).extend(records)
        for record in records:
            kind = record.get("kind")
            if kind == "warning" and record["message"] not in self._warned:
                self._warned.add(record["message"])
                notify(self.listener, "warning", record["message"])
            elif kind == "started" and tuple(record["key"]) in self.cells:
                cell = self.cells[tuple(record["key"])]
                notify(self.listener, "cell_started", cell, len(self.measured), self.todo)
            elif kind == "peak":
                self._adopt_peak(record)
        contents = shard_contents(self._records[shard])
        for row in contents.rows:
            self.accept(row)
        return contents

    def accept(self, row: ResultRow) -> None:
        key = row.key()
        if key not in self.cells or key in self.done:
            return
        row = self._against_run_peak(row)
        with interrupts_deferred():
            failed_before = self.csv.failure is not None
            self.csv.append([row])
            self.done[key] = row
            self.measured.append(row)
            notify(self.listener, "cell_finished", self.cells[key], row, len(self.measured) - 1, self.todo)
            if self.csv.failure is not None and not failed_before:  # the shards keep every row: the run goes on
                notify(self.listener, "warning", f"{self.csv.failure}. This cell and the next stay in the work units' "
                                                 "shards (and the results store, when it records the run).")

    def fail(self, keys: Iterable[CellKey], reason: Callable[[CellKey], str]) -> None:
        """Error rows for the cells of ``keys`` that have none, each with ``reason(key)``."""
        from archbench.sweep.cell_measure import cell_identity

        for key in keys:
            if key in self.cells and key not in self.done:
                self.accept(ResultRow(**cell_identity(self.cells[key], self.options), status="error", error=reason(key)))

    def remaining(self, keys: Iterable[CellKey]) -> list[CellKey]:
        return [k for k in keys if k not in self.done]

    def _adopt_peak(self, record: Mapping[str, Any]) -> None:
        peaks = self.caches.peaks
        tflops = math.nan if record["tflops"] is None else float(record["tflops"])
        peaks.adopt(record["device"], record["dtype"], int(record["threads"]), tflops)  # the run's first figure wins

    def _against_run_peak(self, row: ResultRow) -> ResultRow:
        """``row``'s ``peak_fraction`` against the run's peak for its device, dtype and threads (two workers
        measure the same ceiling twice; every row uses the one the run keeps)."""
        if not math.isfinite(row.peak_fraction) or not self.caches.peaks.is_measured(row.device, row.dtype, row.threads):
            return row
        peak = self.caches.peaks.tflops(row.device, row.dtype, row.threads)
        self.peaks_used[f"{row.device}/{row.dtype}"] = peak
        if not math.isfinite(peak) or peak <= 0:
            return row
        return dataclasses.replace(row, peak_fraction=float(f"{row.achieved_tflops / peak:.6g}"))


@dataclass
class Unit:
    """A work unit handed to a worker or job: its file, its shard and the keys of its cells."""

    path: Path
    keys: tuple[CellKey, ...]
    label: str
    handle: Any = None  # a subprocess.Popen, or a submitit job
    ended: str | None = None  # why it stopped without finishing its cells (None: running, or finished)
    finished: bool = False
    checked_at: float = 0.0  # when its scheduler was last asked about it (time.monotonic)

    @property
    def shard(self) -> Path:
        return shard_path(self.path)


def next_unit_index(work_dir: Path) -> int:
    indices = [int(p.name.split(".")[0][1:]) for p in work_dir.glob("u*.unit.json") if p.name.split(".")[0][1:].isdigit()]
    return max(indices, default=0) + 1


def known_peaks(caches) -> list[tuple[str, str, int, float]]:
    """The CPU peaks the run holds (a resumed run's stored ones), for the workers to reuse."""
    return [(device, dtype, threads, tflops) for (device, dtype, threads, tf32), tflops in caches.peaks.known().items()
            if tf32 is None]


class ShardedExecutor:
    """What the pool and the Slurm executor share: plan the work units, read the shards already there,
    launch, stream the rows back until every unit ended, and turn the cells of a unit that died into error
    rows."""

    jobs: tuple[str, ...] = ()
    running = 0  # units still measuring when run() returned (a detached run's jobs)
    environments: tuple[dict[str, Any], ...] = ()  # where each worker or job measured (worker_environments)

    def run(self, cells, out_csv, *, resume: bool, options: MeasureOptions = MeasureOptions(), listener: Any = None,
            caches=None, interleave=None, work_dir: str | Path | None = None):
        from archbench.sweep.cell_measure import RunCaches
        from archbench.sweep.run import SweepResult, check_buildable

        out_csv, cells = Path(out_csv), tuple(cells)
        work_dir = Path(work_dir) if work_dir is not None else default_work_dir(out_csv)
        caches = caches if caches is not None else RunCaches()
        stored = rows_to_resume(out_csv, resume)
        check_same_sweep(out_csv, stored.rows, (c.key() for c in cells), options)
        if stored.torn_at is not None:  # rows appended next must start on a line of their own
            os.truncate(out_csv, stored.torn_at)
        if not stored.rows and not resume and work_dir.exists():
            shutil.rmtree(work_dir)  # a fresh run: shards of another are not this one's
        done = {r.key(): r for r in stored.rows}
        previous = tuple(done[c.key()] for c in cells if c.key() in done)
        todo = [c for c in dict.fromkeys(cells) if c.key() not in done]
        self.check(todo)
        for warning in stored.warnings:
            notify(listener, "warning", warning)
        notify(listener, "sweep_started", len(cells), len(cells) - len(todo))
        collector = Collector(cells, out_csv, done, options, listener, caches)
        interrupted = False
        units: list[Unit] = []
        try:
            units += self.resume_units(work_dir, collector)
            followed = {key for unit in units for key in unit.keys}
            remaining = [c for c in todo if c.key() not in collector.done and c.key() not in followed]
            if remaining:
                check_buildable(remaining)
                planned = self.plan(remaining, options, interleave, caches, work_dir)
                if interleave is not None and any(unit.interleave is None for unit, _ in planned):
                    notify(listener, "warning", "the models are measured in separate processes, not in alternating "
                                                 "rounds in one: the relative speeds have no paired ratios.")
                units += self.launch(planned, work_dir)
            self.follow(units, collector)
        except KeyboardInterrupt:
            interrupted = True
            self.stop(units, collector)
        from archbench.execute.worker import worker_environments

        self.environments = tuple(worker_environments(work_dir))
        measured = tuple(collector.measured)
        result = SweepResult(out_csv, cells, measured, previous, interrupted, collector.peaks_used, stored.warnings,
                             collector.csv.failure)  # its unwritten rows stay in the shards: not lost
        if not interrupted and not result.remaining and collector.csv.failure is None:
            self.finished(work_dir)
        return result

    # the parts an executor defines

    def check(self, cells: Sequence[Any]) -> None:
        """Raise when these cells cannot run with this executor (before anything starts): every model must be
        rebuildable in another process."""
        check_portable(cells)

    def resume_units(self, work_dir: Path, collector: Collector) -> list[Unit]:
        """Read the shards an earlier coordinator left; units still running elsewhere to follow."""
        for shard in sorted(work_dir.glob("*.shard.jsonl")):
            collector.read(shard)
        return []

    def plan(self, cells, options, interleave, caches, work_dir: Path) -> list[tuple[WorkUnit, dict]]:
        raise NotImplementedError

    def launch(self, planned: list[tuple[WorkUnit, dict]], work_dir: Path) -> list[Unit]:
        raise NotImplementedError

    def poll(self, unit: Unit, contents: ShardContents) -> None:
        """Set ``unit.finished`` / ``unit.ended`` once its process or job is over."""
        raise NotImplementedError

    def stop(self, units: list[Unit], collector: Collector) -> None:
        """Ctrl-C or SIGTERM in the coordinator: stop what runs and keep what finished."""

    def finished(self, work_dir: Path) -> None:
        """Every cell is in: the work units and shards are no longer needed."""
        shutil.rmtree(work_dir, ignore_errors=True)

    def detached(self) -> bool:
        return False

    # the shared loop

    def follow(self, units: list[Unit], collector: Collector) -> None:
        """Stream rows until every unit is over; a unit over with cells unmeasured gets error rows."""
        while True:
            running = 0
            for unit in units:
                if unit.finished or unit.ended is not None:
                    continue
                contents = collector.read(unit.shard)
                self.poll(unit, contents)
                if unit.finished or unit.ended is not None:
                    contents = collector.read(unit.shard)  # what it wrote before it ended
                    self._close(unit, contents, collector)
                else:
                    running += 1
            self.running = running
            if not running or self.detached():
                return
            time.sleep(POLL_S)

    def _close(self, unit: Unit, contents: ShardContents, collector: Collector) -> None:
        missing = collector.remaining(unit.keys)
        if not missing:
            unit.finished = True
            return
        why = unit.ended or f"{unit.label} ended without measuring {len(missing)} of its cells"
        measuring = contents.measuring
        collector.fail(missing, lambda key: (f"{why} while measuring this cell" if key == measuring
                                             else f"not measured: {why} before this cell's turn"))


def group_by_model(cells: Sequence[Any]) -> list[list[Any]]:
    groups: dict[tuple[str, str], list[Any]] = {}
    for cell in cells:
        groups.setdefault((split_target(cell.device)[1], cell.model), []).append(cell)
    return list(groups.values())


def reference_for(share: Sequence[Any], cells: Sequence[Any], interleave) -> str | None:
    """The interleaving reference of a unit: only a unit holding every model of the run interleaves them
    (paired ratios need the reference and the others measured in one process)."""
    if interleave is None or {c.model for c in share} != {c.model for c in cells}:
        return None
    return interleave.reference


# ------------------------------------------------------------------------------------ study file tables


def _slurm_from_table(base: SlurmOptions, table: Mapping[str, Any]) -> SlurmOptions:
    values = {k: v for k, v in table.items() if k in SLURM_KEYS and k != "sbatch"}
    extra = tuple((str(k), str(v)) for k, v in (table.get("sbatch") or {}).items())
    return dataclasses.replace(base, **values, sbatch=(*base.sbatch, *extra))


def settings_from_table(table: Mapping[str, Any], targets: Mapping[str, Mapping[str, Any]] | None = None) -> ExecutorSettings:
    """The settings a study's ``[executor]`` table and ``[targets.NAME]`` tables (validated) describe; each
    target's Slurm options are the executor's with the target's applied."""
    slurm = _slurm_from_table(SlurmOptions(), table)
    kind = table.get("kind", "slurm" if targets else "local")
    return ExecutorSettings(kind=kind, workers=table.get("workers"), slurm=slurm, detach=bool(table.get("detach", False)),
                            targets={name: _slurm_from_table(slurm, t) for name, t in (targets or {}).items()})


