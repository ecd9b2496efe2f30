"""The local worker pool: N processes of ``archbench run-cells``, each pinned to its own cores or GPU
(see :mod:`archbench.execute.executors` for the contract every executor keeps)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archbench.execute.executors import (
    STOP_GRACE_S,
    Collector,
    ExecutorError,
    ShardedExecutor,
    Unit,
    group_by_model,
    known_peaks,
    next_unit_index,
    reference_for,
)
from archbench.execute.workunits import ShardContents, WorkUnit, make_work_unit, write_work_unit
from archbench.interrupts import die_with_parent
from archbench.sweep.cells import split_target

# -------------------------------------------------------------------------------------- the local pool


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class LocalPool(ShardedExecutor):
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
        cpu = [g for g in group_by_model(cells) if not g[0].device.startswith("cuda")]
        gpu = [g for g in group_by_model(cells) if g[0].device.startswith("cuda")]
        slots: list[tuple[list[Any], dict]] = []
        per = self.threads
        for i, share in enumerate(_balanced(cpu, self.cpu_workers)):
            slots.append((share, {"cpus": self.cores[i * per:(i + 1) * per]}))
        gpus = _gpu_count() if gpu else 0
        for i, share in enumerate(_balanced(gpu, gpus if self.requested == "auto" else int(self.requested))):
            slots.append((share, {"env": {"CUDA_VISIBLE_DEVICES": str(i)}}))
        known = known_peaks(caches)
        return [(make_work_unit(share, options, interleave=reference_for(share, cells, interleave), cpus=how.get("cpus"),
                                known_peaks=known, label=f"worker {n}"), how) for n, (share, how) in enumerate(slots, 1) if share]

    def launch(self, planned, work_dir: Path) -> list[Unit]:
        first = next_unit_index(work_dir)
        units = []
        for n, (unit, how) in enumerate(planned):
            path = write_work_unit(work_dir / f"u{first + n:03d}.unit.json", unit)
            log = path.with_name(path.name.removesuffix(".unit.json") + ".log").open("ab")
            env = {**os.environ, **how.get("env", {})}
            process = subprocess.Popen([sys.executable, "-m", "archbench", "run-cells", str(path)], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
            log.close()
            units.append(Unit(path, tuple(unit.keys), f"{unit.label} (pid {process.pid})", process))
        return units

    def poll(self, unit: Unit, contents: ShardContents) -> None:
        code = unit.handle.poll()
        if code is None:
            return
        if code == 0 and contents.ended:
            unit.finished = True
        elif code < 0:
            unit.ended = f"{unit.label} was killed by {signal.Signals(-code).name}"
        else:
            unit.ended = f"{unit.label} exited with code {code}{_last_words(unit.path)}"

    def stop(self, units: list[Unit], collector: Collector) -> None:
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


def _balanced(groups: list[list[Any]], slots: int) -> list[list[Any]]:
    """The groups spread over ``slots`` (largest first onto the least loaded), each slot's cells in plan order."""
    if slots <= 0:
        return []
    shares: list[list[list[Any]]] = [[] for _ in range(slots)]
    for group in sorted(groups, key=len, reverse=True):
        min(shares, key=lambda s: sum(map(len, s))).append(group)
    order = {id(g): i for i, g in enumerate(groups)}
    return [[c for g in sorted(share, key=lambda g: order[id(g)]) for c in g] for share in shares]


def _last_words(unit_path: Path) -> str:
    """The last line a dead worker wrote (its error), for the error rows."""
    log = unit_path.with_name(unit_path.name.removesuffix(".unit.json") + ".log")
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines else ""
