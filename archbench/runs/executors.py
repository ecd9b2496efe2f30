"""Where a run's cells are measured: in this process, in a pool of local worker processes, or as Slurm jobs.

Every executor has the contract of :func:`archbench.runs.sweep.run_sweep` — ``run(cells, out_csv, resume=,
options=, listener=, caches=, interleave=, work_dir=)`` returns a :class:`~archbench.runs.sweep.SweepResult`,
each finished row is appended to ``out_csv`` and given to the listener (``cell_finished``) as it arrives —
so the store, the progress bar and resume work the same everywhere.

* :class:`LocalExecutor` measures in this process (``run_sweep`` itself).
* :class:`LocalPool` spreads the cells over N worker processes (``python -m archbench run-cells UNIT``), each
  pinned to its own cores (``os.sched_setaffinity``; the cells' thread count = cores per worker) or, for CUDA
  cells, to its own GPU (``CUDA_VISIBLE_DEVICES``). The cells of one model stay in one worker.
* :class:`SlurmExecutor` submits one job per model (and target) through submitit.

The out-of-process executors write each group of cells as a work unit (:mod:`archbench.runs.workunits`)
into ``work_dir`` and read the shards the workers append to, as they grow. A worker that dies (SIGKILL, a
segfault, the kernel's OOM killer, a cancelled Slurm job) turns its unfinished cells into error rows with
the reason; the other workers go on. Shards already in ``work_dir`` (a coordinator that was killed) are read
first, so a resumed run re-measures nothing that finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.errors import UsageError
from archbench.interrupts import interrupts_deferred
from archbench.options import MeasureOptions
from archbench.results import CellKey, CsvRows, ResultRow, append_rows_csv, check_same_sweep, read_results_csv
from archbench.runs.workunits import (
    ShardContents,
    ShardWriter,
    WorkUnit,
    check_portable,
    jsonable_peak,
    make_work_unit,
    measured_row,
    read_shard,
    read_work_unit,
    shard_contents,
    shard_path,
    split_target,
    unit_cells,
    with_target,
    write_work_unit,
)

EXECUTORS = ("local", "slurm")
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
class SlurmOptions:
    """What each Slurm job asks for. ``exclusive``: no other job shares the node (on by default: CPU timings
    are only meaningful alone); ``sbatch``: further ``KEY=VALUE`` options, as ``sbatch --KEY=VALUE``."""

    partition: str | None = None
    gpus_per_job: int | None = None
    constraint: str | None = None
    time_limit_min: int = 30  # minutes (submitit always asks for a time; the partition default is not used)
    account: str | None = None
    qos: str | None = None
    exclusive: bool = True
    sbatch: tuple[tuple[str, str], ...] = ()


SLURM_KEYS = tuple(f.name for f in dataclasses.fields(SlurmOptions))


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
    return LocalPool(settings.workers)


def default_work_dir(out_csv: str | Path) -> Path:
    """Where a bench CSV's work units and shards go: ``FILE.shards/`` beside ``FILE.csv``."""
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.stem + WORK_DIR_SUFFIX)


# ------------------------------------------------------------------------------------------ in process


class LocalExecutor:
    """This process measures every cell (:func:`archbench.runs.sweep.run_sweep`)."""

    threads: int | None = None  # the cells' thread count is the caller's
    jobs: tuple[str, ...] = ()
    environments: tuple[dict[str, Any], ...] = ()

    def check(self, cells: Sequence[Any]) -> None:
        """Nothing to check: any cell runs in this process."""

    def run(self, cells, out_csv, *, resume: bool, options: MeasureOptions = MeasureOptions(), listener: Any = None,
            caches=None, interleave=None, work_dir: str | Path | None = None):
        from archbench.runs.sweep import run_sweep

        return run_sweep(cells, out_csv, resume=resume, options=options, listener=listener, caches=caches,
                         interleave=interleave)


# --------------------------------------------------------------------------------- streaming results


def _notify(listener: Any, method: str, *args: Any) -> None:
    callback = getattr(listener, method, None) if listener is not None else None
    if callback is not None:
        callback(*args)


class _Collector:
    """The coordinator's side of the shards: reads what they gained since the last look, appends each new
    row of a planned cell to the run's CSV (interrupts deferred: never half a line) and hands it to the
    listener; device peaks the workers measured become the run's (the first measurement of a peak wins, and
    every row's ``peak_fraction`` is taken against it)."""

    def __init__(self, cells: Sequence[Any], out_csv: Path, done: Mapping[CellKey, ResultRow], options: MeasureOptions,
                 listener: Any, caches):
        self.cells = {c.key(): c for c in cells}
        self.out_csv, self.options, self.listener, self.caches = out_csv, options, listener, caches
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
                _notify(self.listener, "warning", record["message"])
            elif kind == "started" and tuple(record["key"]) in self.cells:
                cell = self.cells[tuple(record["key"])]
                _notify(self.listener, "cell_started", cell, len(self.measured), self.todo)
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
            append_rows_csv(self.out_csv, [row])
            self.done[key] = row
            self.measured.append(row)
            _notify(self.listener, "cell_finished", self.cells[key], row, len(self.measured) - 1, self.todo)

    def fail(self, keys: Iterable[CellKey], reason: Callable[[CellKey], str]) -> None:
        """Error rows for the cells of ``keys`` that have none, each with ``reason(key)``."""
        from archbench.runs.sweep import cell_identity

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


def _stored_rows(out_csv: Path, resume: bool) -> CsvRows:
    """The rows already in ``out_csv`` (only with ``resume``; a file with rows is refused otherwise)."""
    if not out_csv.exists() or out_csv.stat().st_size == 0:
        return CsvRows(())
    if not resume:
        raise UsageError(f"'{out_csv}' already holds results", remedies=("resume", "out"))
    stored = read_results_csv(out_csv)
    if stored.torn_at is not None:  # rows appended next must start on a line of their own
        os.truncate(out_csv, stored.torn_at)
    return stored


@dataclass
class _Unit:
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


def _next_unit_index(work_dir: Path) -> int:
    indices = [int(p.name.split(".")[0][1:]) for p in work_dir.glob("u*.unit.json") if p.name.split(".")[0][1:].isdigit()]
    return max(indices, default=0) + 1


def _known_peaks(caches) -> list[tuple[str, str, int, float]]:
    """The CPU peaks the run holds (a resumed run's stored ones), for the workers to reuse."""
    return [(device, dtype, threads, tflops) for (device, dtype, threads, tf32), tflops in caches.peaks.known().items()
            if tf32 is None]


class _ShardedExecutor:
    """What the pool and the Slurm executor share: plan the work units, read the shards already there,
    launch, stream the rows back until every unit ended, and turn the cells of a unit that died into error
    rows."""

    jobs: tuple[str, ...] = ()
    running = 0  # units still measuring when run() returned (a detached run's jobs)
    environments: tuple[dict[str, Any], ...] = ()  # where each worker or job measured (worker_environments)

    def run(self, cells, out_csv, *, resume: bool, options: MeasureOptions = MeasureOptions(), listener: Any = None,
            caches=None, interleave=None, work_dir: str | Path | None = None):
        from archbench.runs.sweep import RunCaches, SweepResult, check_buildable

        out_csv, cells = Path(out_csv), tuple(cells)
        work_dir = Path(work_dir) if work_dir is not None else default_work_dir(out_csv)
        caches = caches if caches is not None else RunCaches()
        stored = _stored_rows(out_csv, resume)
        check_same_sweep(out_csv, stored.rows, (c.key() for c in cells), precision=options.precision,
                         max_time_s=options.max_time_s, min_samples=options.min_samples)
        if not stored.rows and not resume and work_dir.exists():
            shutil.rmtree(work_dir)  # a fresh run: shards of another are not this one's
        done = {r.key(): r for r in stored.rows}
        previous = tuple(done[c.key()] for c in cells if c.key() in done)
        todo = [c for c in dict.fromkeys(cells) if c.key() not in done]
        self.check(todo)
        for warning in stored.warnings:
            _notify(listener, "warning", warning)
        _notify(listener, "sweep_started", len(cells), len(cells) - len(todo))
        collector = _Collector(cells, out_csv, done, options, listener, caches)
        interrupted = False
        units: list[_Unit] = []
        try:
            units += self.resume_units(work_dir, collector)
            followed = {key for unit in units for key in unit.keys}
            remaining = [c for c in todo if c.key() not in collector.done and c.key() not in followed]
            if remaining:
                check_buildable(remaining)
                planned = self.plan(remaining, options, interleave, caches, work_dir)
                if interleave is not None and any(unit.interleave is None for unit, _ in planned):
                    _notify(listener, "warning", "the models are measured in separate processes, not in alternating "
                                                 "rounds in one: the relative speeds have no paired ratios.")
                units += self.launch(planned, work_dir)
            self.follow(units, collector)
        except KeyboardInterrupt:
            interrupted = True
            self.stop(units, collector)
        self.environments = tuple(worker_environments(work_dir))
        measured = tuple(collector.measured)
        result = SweepResult(out_csv, cells, measured, previous, interrupted, collector.peaks_used, stored.warnings)
        if not interrupted and not result.remaining:
            self.finished(work_dir)
        return result

    # the parts an executor defines

    def check(self, cells: Sequence[Any]) -> None:
        """Raise when these cells cannot run with this executor (before anything starts): every model must be
        rebuildable in another process."""
        check_portable(cells)

    def resume_units(self, work_dir: Path, collector: _Collector) -> list[_Unit]:
        """Read the shards an earlier coordinator left; units still running elsewhere to follow."""
        for shard in sorted(work_dir.glob("*.shard.jsonl")):
            collector.read(shard)
        return []

    def plan(self, cells, options, interleave, caches, work_dir: Path) -> list[tuple[WorkUnit, dict]]:
        raise NotImplementedError

    def launch(self, planned: list[tuple[WorkUnit, dict]], work_dir: Path) -> list[_Unit]:
        raise NotImplementedError

    def poll(self, unit: _Unit, contents: ShardContents) -> None:
        """Set ``unit.finished`` / ``unit.ended`` once its process or job is over."""
        raise NotImplementedError

    def stop(self, units: list[_Unit], collector: _Collector) -> None:
        """Ctrl-C or SIGTERM in the coordinator: stop what runs and keep what finished."""

    def finished(self, work_dir: Path) -> None:
        """Every cell is in: the work units and shards are no longer needed."""
        shutil.rmtree(work_dir, ignore_errors=True)

    def detached(self) -> bool:
        return False

    # the shared loop

    def follow(self, units: list[_Unit], collector: _Collector) -> None:
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

    def _close(self, unit: _Unit, contents: ShardContents, collector: _Collector) -> None:
        missing = collector.remaining(unit.keys)
        if not missing:
            unit.finished = True
            return
        why = unit.ended or f"{unit.label} ended without measuring {len(missing)} of its cells"
        measuring = contents.measuring
        collector.fail(missing, lambda key: (f"{why} while measuring this cell" if key == measuring
                                             else f"not measured: {why} before this cell's turn"))


def _group_by_model(cells: Sequence[Any]) -> list[list[Any]]:
    groups: dict[tuple[str, str], list[Any]] = {}
    for cell in cells:
        groups.setdefault((split_target(cell.device)[1], cell.model), []).append(cell)
    return list(groups.values())


# -------------------------------------------------------------------------------------- the local pool


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class LocalPool(_ShardedExecutor):
    """N worker processes on this machine. CPU cells: the cores this process may use are split into N equal
    sets, one per worker, and the cells run with that many threads; CUDA cells: one GPU per worker.
    ``workers="auto"``: one per visible GPU when there are CUDA cells, else one per core."""

    def __init__(self, workers: int | str):
        self.requested = workers
        self.cores = _cores()

    @property
    def cpu_workers(self) -> int:
        return len(self.cores) if self.requested == "auto" else int(self.requested)

    @property
    def threads(self) -> int:
        """The thread count of CPU cells: the cores of one worker."""
        return max(1, len(self.cores) // self.cpu_workers)

    def check(self, cells: Sequence[Any]) -> None:
        super().check(cells)
        devices = {split_target(c.device)[0] for c in cells}
        if any(d.startswith("cuda") for d in devices):
            gpus = _gpu_count()
            workers = gpus if self.requested == "auto" else int(self.requested)
            if workers > gpus or gpus == 0:
                raise ExecutorError(f"{workers} worker(s) for CUDA cells, and this machine has {gpus} visible GPU(s): "
                                    "give at most one worker per GPU.")
            indexed = sorted(d for d in devices if d.startswith("cuda:"))
            if indexed:
                raise ExecutorError(f"device {indexed[0]}: with worker processes each worker sees its own GPU as 'cuda'; "
                                    "name the device cuda.")
        if "cpu" in devices and self.cpu_workers > len(self.cores):
            raise ExecutorError(f"{self.cpu_workers} worker(s) for CPU cells, and this process may use {len(self.cores)} "
                                f"core(s): give at most {len(self.cores)} (each worker gets its own cores).")
        too_many = sorted({c.threads for c in cells if c.device == "cpu" and c.threads > self.threads})
        if too_many:
            raise ExecutorError(f"threads {too_many[0]} with {self.cpu_workers} worker(s): each worker has {self.threads} "
                                f"core(s) of the {len(self.cores)} this process may use; ask for at most {self.threads} "
                                "thread(s), or fewer workers.")

    def plan(self, cells, options, interleave, caches, work_dir: Path) -> list[tuple[WorkUnit, dict]]:
        cpu = [g for g in _group_by_model(cells) if not g[0].device.startswith("cuda")]
        gpu = [g for g in _group_by_model(cells) if g[0].device.startswith("cuda")]
        slots: list[tuple[list[Any], dict]] = []
        per = self.threads
        for i, share in enumerate(_balanced(cpu, self.cpu_workers)):
            slots.append((share, {"cpus": self.cores[i * per:(i + 1) * per]}))
        gpus = _gpu_count() if gpu else 0
        for i, share in enumerate(_balanced(gpu, gpus if self.requested == "auto" else int(self.requested))):
            slots.append((share, {"env": {"CUDA_VISIBLE_DEVICES": str(i)}}))
        known = _known_peaks(caches)
        return [(make_work_unit(share, options, interleave=_reference_for(share, cells, interleave), cpus=how.get("cpus"),
                                known_peaks=known, label=f"worker {n}"), how) for n, (share, how) in enumerate(slots, 1) if share]

    def launch(self, planned, work_dir: Path) -> list[_Unit]:
        first = _next_unit_index(work_dir)
        units = []
        for n, (unit, how) in enumerate(planned):
            path = write_work_unit(work_dir / f"u{first + n:03d}.unit.json", unit)
            log = path.with_name(path.name.removesuffix(".unit.json") + ".log").open("ab")
            env = {**os.environ, **how.get("env", {})}
            process = subprocess.Popen([sys.executable, "-m", "archbench", "run-cells", str(path)], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
            log.close()
            units.append(_Unit(path, tuple(unit.keys), f"{unit.label} (pid {process.pid})", process))
        return units

    def poll(self, unit: _Unit, contents: ShardContents) -> None:
        code = unit.handle.poll()
        if code is None:
            return
        if code == 0 and contents.ended:
            unit.finished = True
        elif code < 0:
            unit.ended = f"{unit.label} was killed by {signal.Signals(-code).name}"
        else:
            unit.ended = f"{unit.label} exited with code {code}{_last_words(unit.path)}"

    def stop(self, units: list[_Unit], collector: _Collector) -> None:
        live = [u for u in units if u.handle is not None and u.handle.poll() is None]
        for unit in live:
            unit.handle.send_signal(signal.SIGTERM)  # run-cells keeps the cells it finished, as on Ctrl-C
        deadline = time.monotonic() + STOP_GRACE_S
        for unit in live:
            try:
                unit.handle.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                unit.handle.kill()
                unit.handle.wait()
        with contextlib.suppress(KeyboardInterrupt):
            for unit in units:
                collector.read(unit.shard)


def _reference_for(share: Sequence[Any], cells: Sequence[Any], interleave) -> str | None:
    """The interleaving reference of a unit: only a unit holding every model of the run interleaves them
    (paired ratios need the reference and the others measured in one process)."""
    if interleave is None or {c.model for c in share} != {c.model for c in cells}:
        return None
    return interleave.reference


def _balanced(groups: list[list[Any]], slots: int) -> list[list[Any]]:
    """The groups spread over ``slots`` (largest first onto the least loaded), each slot's cells in plan order."""
    if slots <= 0:
        return []
    shares: list[list[list[Any]]] = [[] for _ in range(slots)]
    for group in sorted(groups, key=len, reverse=True):
        min(shares, key=lambda s: sum(map(len, s))).append(group)
    order = {id(g): i for i, g in enumerate(groups)}
    return [[c for g in sorted(share, key=lambda g: order[id(g)]) for c in g] for share in shares]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the coordinator dies (even by SIGKILL), so no worker measures
    on with nobody reading; its finished cells stay in its shard for the run that resumes."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _last_words(unit_path: Path) -> str:
    """The last line a dead worker wrote (its error), for the error rows."""
    log = unit_path.with_name(unit_path.name.removesuffix(".unit.json") + ".log")
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines else ""


# ------------------------------------------------------------------------------------------- Slurm


def require_submitit():
    """submitit, and ``sbatch`` on PATH — or :class:`ExecutorError` saying how to get them."""
    try:
        import submitit
    except ImportError:
        raise ExecutorError("running on Slurm needs submitit, which is not installed: pip install \"archbench[slurm]\".") from None
    if shutil.which("sbatch") is None:
        raise ExecutorError("running on Slurm needs `sbatch` on PATH, and there is none here: run on a machine of the "
                            "cluster (a login node), or load its Slurm module.")
    return submitit


MANIFEST = "manifest.json"


class SlurmExecutor(_ShardedExecutor):
    """One Slurm job per model (and target), submitted with submitit; the jobs' shards are read as they grow.
    A job preempted or timed out is requeued once (it goes on from its shard: nothing finished is measured
    again); a job that ends otherwise without finishing turns its cells into error rows with Slurm's state
    (``TIMEOUT``, ``CANCELLED by 0``, ``OUT_OF_MEMORY`` ...). ``detach``: submit, record the jobs in
    ``work_dir/manifest.json`` and return; :func:`collect` (or a resumed run) follows them later."""

    def __init__(self, slurm: SlurmOptions = SlurmOptions(), *, detach: bool = False,
                 targets: Mapping[str, SlurmOptions] | None = None, submit: bool = True):
        self.submitit = require_submitit()
        self.slurm, self.detach_after_submit, self.targets = slurm, detach, dict(targets or {})
        self.submit = submit  # False: only follow the jobs already submitted (collect)
        self.jobs: tuple[str, ...] = ()

    @property
    def threads(self) -> int | None:
        return None

    def detached(self) -> bool:
        return self.detach_after_submit

    def check(self, cells: Sequence[Any]) -> None:
        """Every model travels; every target is known; and Slurm accepts each target's job options (``sbatch
        --test-only``: an unknown partition, constraint, account or QoS is refused now, in Slurm's words)."""
        super().check(cells)
        unknown = sorted({t for c in cells if (t := split_target(c.device)[1]) and t not in self.targets})
        if unknown:
            raise ExecutorError(f"cells of target '{unknown[0]}', which is not one of the targets "
                                f"({', '.join(self.targets) or 'none'}).")
        if not self.submit:
            return
        for target in dict.fromkeys(split_target(c.device)[1] for c in cells):
            mine = [c for c in cells if split_target(c.device)[1] == target]
            _test_submission(self.targets[target] if target else self.slurm, max(c.threads for c in mine),
                             any(c.device.startswith("cuda") for c in mine), target)

    def resume_units(self, work_dir: Path, collector: _Collector) -> list[_Unit]:
        super().resume_units(work_dir, collector)
        units = []
        for entry in _read_manifest(work_dir):
            unit = _Unit(Path(entry["unit"]), tuple(tuple(k) for k in entry["keys"]), f"Slurm job {entry['job_id']}",
                         self.submitit.SlurmJob(folder=work_dir / "slurm" / "%j", job_id=str(entry["job_id"])))
            units.append(unit)
        self.jobs = tuple(str(e["job_id"]) for e in _read_manifest(work_dir))
        return units

    def plan(self, cells, options, interleave, caches, work_dir: Path) -> list[tuple[WorkUnit, dict]]:
        if not self.submit:
            return []
        known = _known_peaks(caches)
        planned = []
        for group in _group_by_model(cells):
            target = split_target(group[0].device)[1]
            slurm = self.targets[target] if target else self.slurm
            unit = make_work_unit(group, options, interleave=_reference_for(group, cells, interleave), known_peaks=known,
                                  label=f"{group[0].model}{'@' + target if target else ''}")
            planned.append((unit, {"slurm": slurm, "cpus": max(c.threads for c in group),
                                   "gpu": any(c.device.startswith("cuda") for c in group)}))
        return planned

    def launch(self, planned, work_dir: Path) -> list[_Unit]:
        first = _next_unit_index(work_dir)
        units = []
        for n, (unit, how) in enumerate(planned):
            path = write_work_unit(work_dir / f"u{first + n:03d}.unit.json", unit)
            job = self._submit(path, how, work_dir)
            _append_manifest(work_dir, {"job_id": job.job_id, "unit": str(path), "keys": [list(k) for k in unit.keys]})
            units.append(_Unit(path, tuple(unit.keys), f"Slurm job {job.job_id}", job))
        self.jobs = (*self.jobs, *(u.handle.job_id for u in units))
        return units

    def _submit(self, unit_path: Path, how: Mapping[str, Any], work_dir: Path):
        slurm: SlurmOptions = how["slurm"]
        executor = self.submitit.SlurmExecutor(folder=work_dir / "slurm" / "%j", max_num_timeout=MAX_REQUEUES)
        parameters: dict[str, Any] = {"time": slurm.time_limit_min, "cpus_per_task": how["cpus"], "nodes": 1,
                                      "ntasks_per_node": 1, "job_name": f"archbench-{unit_path.stem.split('.')[0]}",
                                      "signal_delay_s": min(90, max(10, slurm.time_limit_min * 60 // 10))}
        optional = {"partition": slurm.partition, "constraint": slurm.constraint, "account": slurm.account,
                    "qos": slurm.qos, "gpus_per_node": slurm.gpus_per_job if how["gpu"] else None}
        parameters.update({k: v for k, v in optional.items() if v is not None})
        if slurm.exclusive:
            parameters["exclusive"] = True
        if slurm.sbatch:
            parameters["additional_parameters"] = dict(slurm.sbatch)
        executor.update_parameters(**parameters)
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):  # submitit prints sbatch's complaint itself
                return executor.submit(RunCellsJob(str(unit_path)))
        except self.submitit.core.utils.FailedJobError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            said = lines[-1] if lines else "no reason given"
            raise ExecutorError(f"Slurm refused the job: {said}") from None

    def poll(self, unit: _Unit, contents: ShardContents) -> None:
        job = unit.handle
        if contents.ended and not contents.interrupted and not collect_missing(unit, contents):
            unit.finished = True
            return
        now = time.monotonic()
        if now - unit.checked_at < SLURM_STATE_EVERY_S:
            return
        unit.checked_at = now
        if job.done(force_check=True):
            state = job.state
            unit.ended = f"Slurm job {job.job_id} ended ({state})" if state not in ("COMPLETED",) else None
            unit.finished = unit.ended is None

    def stop(self, units: list[_Unit], collector: _Collector) -> None:
        """Ctrl-C in a run that waits for its jobs: the jobs are cancelled (a detached run is not stopped)."""
        for unit in units:
            if not unit.finished and unit.ended is None:
                with contextlib.suppress(Exception):
                    unit.handle.cancel(check=False)
        with contextlib.suppress(KeyboardInterrupt):
            for unit in units:
                collector.read(unit.shard)


def _sbatch_arguments(slurm: SlurmOptions, cpus: int, gpu: bool) -> list[str]:
    """The job options as sbatch arguments (as submitit writes them into the job script)."""
    given = {"partition": slurm.partition, "constraint": slurm.constraint, "account": slurm.account, "qos": slurm.qos,
             "gpus-per-node": slurm.gpus_per_job if gpu else None, "time": slurm.time_limit_min, "cpus-per-task": cpus}
    arguments = [f"--{k}={v}" for k, v in given.items() if v is not None]
    arguments += ["--exclusive"] if slurm.exclusive else []
    return arguments + [f"--{k}={v}" for k, v in slurm.sbatch]


def _test_submission(slurm: SlurmOptions, cpus: int, gpu: bool, target: str) -> None:
    """``sbatch --test-only``: Slurm's own verdict on the job options, without submitting anything."""
    command = ["sbatch", "--test-only", *_sbatch_arguments(slurm, cpus, gpu), "--wrap", "true"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExecutorError(f"cannot ask Slurm whether it accepts the jobs ({' '.join(command)}): {exc}.") from None
    if proc.returncode != 0:
        said = "; ".join(line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip())
        where = f" of target '{target}'" if target else ""
        raise ExecutorError(f"Slurm refuses the jobs{where}: {said or f'sbatch exited with code {proc.returncode}'}")


def collect_missing(unit: _Unit, contents: ShardContents) -> list[CellKey]:
    return [k for k in unit.keys if k not in contents.keys]


def _read_manifest(work_dir: Path) -> list[dict[str, Any]]:
    path = work_dir / MANIFEST
    if not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["jobs"]


def _append_manifest(work_dir: Path, entry: dict[str, Any]) -> None:
    jobs = [*_read_manifest(work_dir), entry]
    tmp = work_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"jobs": jobs}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, work_dir / MANIFEST)


def manifest_jobs(work_dir: str | Path) -> list[str]:
    """The Slurm job ids a run submitted (``work_dir/manifest.json``)."""
    return [str(e["job_id"]) for e in _read_manifest(Path(work_dir))]


class RunCellsJob:
    """What a Slurm job runs: :func:`run_work_unit` on its unit file, in the job's process. On preemption or
    at its time limit submitit asks :meth:`checkpoint` for the job to requeue: the same unit (its shard keeps
    what finished), once."""

    def __init__(self, unit_path: str, requeued: int = 0):
        self.unit_path = unit_path
        self.requeued = requeued

    def __call__(self) -> int:
        contents = run_work_unit(self.unit_path)
        return len(contents.rows)

    def checkpoint(self, *args: Any, **kwargs: Any):
        if self.requeued >= MAX_REQUEUES:
            return None
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(RunCellsJob(self.unit_path, self.requeued + 1))


# ---------------------------------------------------------------------------------------- the worker


class _ShardListener:
    """The sweep listener of a worker: each finished row (with its raw samples, labelled with its planned
    device) and the device peaks behind it go to the shard, fsynced, before the sweep goes on."""

    def __init__(self, writer: ShardWriter, labels: Mapping[CellKey, str], caches, target: str):
        self.writer, self.labels, self.caches, self.target = writer, labels, caches, target
        self._peaks_written: set[tuple] = set()

    def warning(self, message: str) -> None:
        self.writer.write("warning", message=message)

    def cell_started(self, cell, index: int, todo: int) -> None:
        self.writer.write("started", key=list(self._planned_key(cell)))

    def cell_finished(self, cell, row: ResultRow, index: int, todo: int) -> None:
        from archbench.runs.workunits import row_to_json

        for dtype in dict.fromkeys((row.dtype, "fp32")):
            key = self.caches.peaks.key(cell.device, dtype, cell.threads)
            if key not in self._peaks_written and self.caches.peaks.is_measured(cell.device, dtype, cell.threads):
                tflops = self.caches.peaks.tflops(cell.device, dtype, cell.threads)
                self.writer.write("peak", **jsonable_peak(with_target(cell.device, self.target), dtype, key[2], tflops))
                self._peaks_written.add(key)
        self.writer.write("row", row=row_to_json(measured_row(row, self.labels[row.key()])))

    def _planned_key(self, cell) -> CellKey:
        return cell.key()._replace(device=self.labels[cell.key()])


def run_work_unit(unit_path: str | Path, *, listener: Any = None) -> ShardContents:
    """Measure the cells of the work unit at ``unit_path`` in this process, appending to its shard: pinned to
    the unit's cores (before torch starts its threads), in its working directory, skipping the cells the
    shard already holds. Returns the shard's contents. Ctrl-C/SIGTERM end it after the last finished cell
    (its shard then ends ``interrupted``)."""
    unit_path = Path(unit_path).resolve()
    unit = read_work_unit(unit_path)
    if unit.cpus:
        os.sched_setaffinity(0, unit.cpus)
    os.chdir(unit.cwd)
    writer = ShardWriter(shard_path(unit_path))
    records, _ = read_shard(writer.path)
    already = shard_contents(records).keys
    writer.write("start", **_process_facts(unit))
    from archbench.runs.interleave import Interleaving
    from archbench.runs.sweep import RunCaches, run_sweep
    from archbench.timing.peak import DevicePeaks

    cells = unit_cells(unit)
    labels = {cell.key(): planned for cell, planned in zip(cells, (c["key"][1] for c in unit.cells))}
    targets = {split_target(label)[1] for label in labels.values()}
    todo = [c for c, item in zip(cells, unit.keys) if item not in already]
    target = targets.pop() if len(targets) == 1 else ""
    caches = RunCaches(DevicePeaks(known={(split_target(d)[0], dt, int(t), None): float(v) for d, dt, t, v in unit.known_peaks
                                          if split_target(d)[1] == target}))
    scratch = unit_path.with_name(f".{unit_path.name}.csv")  # run_sweep's own file; the shard is the record
    scratch.unlink(missing_ok=True)
    shard_listener = _ShardListener(writer, labels, caches, target)
    interleave = Interleaving(unit.interleave) if unit.interleave and len({c.model for c in todo}) > 1 else None
    result = run_sweep(todo, scratch, resume=False, options=unit.measure_options(),
                       listener=_Both(shard_listener, listener), caches=caches, interleave=interleave)
    scratch.unlink(missing_ok=True)
    writer.write("end", interrupted=result.interrupted)
    final, _ = read_shard(writer.path)
    return shard_contents(final)


class _Both:
    """Calls each listener in turn (the shard's first)."""

    def __init__(self, *listeners: Any):
        self.listeners = [x for x in listeners if x is not None]

    def __getattr__(self, name: str):
        def call(*args: Any) -> None:
            for listener in self.listeners:
                _notify(listener, name, *args)

        return call


def _process_facts(unit: WorkUnit) -> dict[str, Any]:
    """Where this worker runs: host, process, cores, GPU visibility, Slurm job, and the environment
    fingerprint (as the report keeps it), written with each start to the shard."""
    import platform

    from archbench.runs.envinfo import environment

    devices = list(dict.fromkeys(split_target(c["key"][1])[0] for c in unit.cells))
    threads = max((int(c["key"][8]) for c in unit.cells), default=None)
    return {"pid": os.getpid(), "host": platform.node(), "affinity": sorted(os.sched_getaffinity(0)),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "slurm_partition": os.environ.get("SLURM_JOB_PARTITION"),
            "label": unit.label, "env": environment(devices, threads)}


def worker_environments(work_dir: str | Path) -> list[dict[str, Any]]:
    """Where the workers or jobs of ``work_dir`` measured: each start's environment fingerprint with the worker's
    facts (``worker``, ``host``, ``affinity``, ``cuda_visible_devices``, ``slurm_job``), one per worker."""
    found: dict[str, dict[str, Any]] = {}
    for shard in sorted(Path(work_dir).glob("*.shard.jsonl")):
        records, _ = read_shard(shard)
        for start in shard_contents(records).starts:
            facts = {k: start.get(k) for k in ("host", "affinity", "cuda_visible_devices", "slurm_job", "slurm_partition")}
            found.setdefault(start.get("label") or shard.name, {**start["env"], "worker": start.get("label"), **facts})
    return list(found.values())


def planned_threads(study, executor):
    """``study`` with its cells' thread count set to the executor's when the study leaves it open (a worker of
    a pool runs its CPU cells on its own cores, as many threads as it has cores)."""
    if study.options.threads is not None or getattr(executor, "threads", None) is None:
        return study
    return dataclasses.replace(study, options=dataclasses.replace(study.options, threads=executor.threads))


# ------------------------------------------------------------------------------------ study file tables

EXECUTOR_KEYS = ("kind", "workers", "detach", *(k for k in SLURM_KEYS))
TARGET_KEYS = SLURM_KEYS
_TABLE_TYPES: dict[str, tuple[type, ...]] = {"partition": (str,), "constraint": (str,), "account": (str,), "qos": (str,),
                                              "gpus_per_job": (int,), "time_limit_min": (int,), "exclusive": (bool,),
                                              "detach": (bool,), "sbatch": (dict,), "kind": (str,), "workers": (int, str)}


def table_problem(table: Mapping[str, Any], allowed: Sequence[str]) -> str | None:
    """What is wrong with an ``[executor]`` or ``[targets.NAME]`` table (None: nothing), naming the key."""
    import difflib

    for key, value in table.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            return f"unknown key '{key}'.{hint} Allowed: {', '.join(allowed)}."
        types = _TABLE_TYPES[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            return f"{key}: {value!r} is not {_kind_of(types)}."
        if key in ("gpus_per_job", "time_limit_min") and value <= 0:
            return f"{key}: {value!r} is not a positive integer."
        if key == "kind" and value not in EXECUTORS:
            return f"kind: {value!r} is not one of {', '.join(EXECUTORS)}."
        if key == "workers" and not (value == "auto" or isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return f"workers: {value!r} is neither a positive integer nor \"auto\"."
        if key == "sbatch" and not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value.values()):
            return "sbatch: expected a table of sbatch options and their values, e.g. sbatch = { mem = \"32G\" }."
    return None


def _kind_of(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", dict: "a table"}
    return " or ".join(names[t] for t in types)


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


# ------------------------------------------------------------------------------------------- collect


@dataclass(frozen=True)
class Collected:
    """What :func:`collect_run` did: the run, its report folder, the compare result (None: the run was
    already complete) and how many of its jobs are still queued or running."""

    run_id: int
    out_dir: Path
    result: Any = None
    running: int = 0


def collect_run(store, ref: str, *, listener: Any = None) -> Collected:
    """Gather into ``store`` (and the run's partial files) the cells the Slurm jobs of run ``ref`` finished, and
    write its report once every cell is in. Idempotent: cells already gathered are skipped, a complete run is
    left as it is. Raises :class:`~archbench.errors.StoreError` for an unknown run, :class:`ExecutorError` for a
    run that has no jobs to collect."""
    from archbench.report.jsonfile import read_json
    from archbench.runs.compare import MARKDOWN_NAME, PARTIAL_JSON, SHARDS_DIR, run_compare

    run_id = store.resolve(ref)
    info = store.run_info(run_id)
    out_dir = Path(info.out_path) if info.out_path else None
    work_dir = out_dir / SHARDS_DIR if out_dir is not None else None
    if out_dir is None or not (out_dir / PARTIAL_JSON).exists():
        if out_dir is not None and (out_dir / MARKDOWN_NAME).exists() and info.n_cells >= info.planned_cells:
            return Collected(run_id, out_dir)
        raise ExecutorError(f"run {run_id} has nothing to collect: it is not a detached compare run waiting for Slurm jobs "
                            f"(its results: {info.out_path or 'no folder'}).")
    if not _read_manifest(work_dir):
        raise ExecutorError(f"run {run_id} submitted no Slurm jobs ({work_dir / MANIFEST} is missing): it was measured "
                            "in its own process; resume it with the command that started it.")
    latest = store.latest_run_for(out_dir)
    if latest != run_id:
        raise ExecutorError(f"run {run_id}'s folder '{out_dir}' belongs to a later run ({latest}) now: collect that one.")
    study = read_json(out_dir / PARTIAL_JSON).study
    settings = settings_from_table(study.executor, study.targets)
    executor = SlurmExecutor(settings.slurm, detach=True, targets=settings.targets, submit=False)
    result = run_compare(study, out_dir, command=info.command, resume=True, sources=_unit_sources(work_dir),
                         listener=listener, store=store, executor=executor)
    return Collected(run_id, out_dir, result, executor.running)


def _unit_sources(work_dir: Path) -> dict[str, Any]:
    """The models of the run, as its work units hold them (no spec folder or import path of the original
    command needed)."""
    from archbench.runs.workunits import model_from_json

    sources: dict[str, Any] = {}
    for path in sorted(work_dir.glob("u*.unit.json")):
        for model in read_work_unit(path).models:
            sources.setdefault(model["name"], model_from_json(model))
    return sources
