"""The worker side of the out-of-process executors: measure a work unit's cells in this process and
append each finished one to its shard (``archbench run-cells``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archbench.execute.workunits import (
    ShardContents,
    ShardWriter,
    WorkUnit,
    jsonable_peak,
    measured_row,
    read_shard,
    read_work_unit,
    shard_contents,
    shard_path,
    unit_cells,
)
from archbench.listeners import notify
from archbench.rows import CellKey, ResultRow
from archbench.sweep.cells import split_target, with_target

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
        from archbench.rows import row_to_json

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
    from archbench.sweep.cell_measure import RunCaches
    from archbench.sweep.interleave import Interleaving
    from archbench.sweep.run import run_sweep
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
                notify(listener, name, *args)

        return call


def _process_facts(unit: WorkUnit) -> dict[str, Any]:
    """Where this worker runs: host, process, cores, GPU visibility, Slurm job, and the environment
    fingerprint (as the report keeps it), written with each start to the shard."""
    import platform

    from archbench.env.environment import environment

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
