"""``--batch max``: the largest batch whose step runs within the device's memory (or a memory limit), found
before the cell is timed, in a process of its own.

1. **Predict** from the memory the step needs per part (:mod:`archbench.memory_estimate`: parameters,
   gradients, activations saved for backward — measured at two small batches — and workspace): the largest
   batch whose estimate is within the budget (the limit; on CUDA the device's free memory).
2. **Confirm** in a worker process (:mod:`archbench.sweep.batch_probe`, started like the local pool's
   workers, :mod:`archbench.execute.pool`): the step runs at the predicted batch, then at doubled (or halved)
   batches until one fits and one does not, then bisection narrows the two until they are within
   :data:`TOLERANCE` of each other. The limit is enforced inside the worker, so an out-of-memory error, a CUDA
   error or the kernel's OOM killer ends that worker — the next probe starts a new one — never the run.
3. The cell is then timed at the batch found, like any other; its row says how the batch was found
   (:func:`search_fields`): the bound that stopped the search (``oom``: the device's memory; ``memory_limit``:
   the limit asked for; ``max_batch``: the cap), the prediction and every probe.

Without a limit on the CPU, the memory available when the search starts is the limit (swap and the OOM
killer would otherwise decide), and the bound is ``oom``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from archbench.errors import ModelRunError, UsageError

MAX = "max"
TOLERANCE = 1 / 8  # bisection stops once the batch that fails is within 12.5% above the one that fits
BOUNDS = ("oom", "memory_limit", "max_batch")
AVAILABLE_SHARE = 0.9  # without a limit on the CPU: this share of the memory available at the start


@dataclass(frozen=True)
class MaxBatchSettings:
    """What bounds the search: ``memory_limit_bytes`` (None: the device's memory; on the CPU what is available)
    and ``max_batch`` (None: no cap)."""

    memory_limit_bytes: int | None = None
    max_batch: int | None = None


@dataclass(frozen=True)
class Probe:
    """One step run by the worker: ``fits`` or not (``reason``: the allocator's words, or how the worker died)."""

    batch: int
    fits: bool
    peak_bytes: float = math.nan
    reason: str = ""

    def describe(self) -> str:
        return f"{self.batch} {'ok' if self.fits else 'oom'}"


@dataclass(frozen=True)
class BatchSearch:
    """How a cell's batch was found: ``batch`` (0: not even batch 1 fits), the ``bound`` that stopped the search,
    the ``predicted`` batch (0: no prediction) and the ``probes`` in the order they ran."""

    batch: int
    bound: str
    predicted: int
    probes: tuple[Probe, ...]
    limit_bytes: float = math.nan  # the memory limit the worker ran under (NaN: the device's memory)
    limit_how: str = ""

    @property
    def found(self) -> bool:
        return self.batch > 0

    @property
    def probes_text(self) -> str:
        return ", ".join(p.describe() for p in self.probes)

    def failure(self) -> str:
        """Why no batch fits (for the row of a search that found none)."""
        last = next((p for p in reversed(self.probes) if not p.fits), None)
        return f"no batch fits ({self.bound}): batch 1 does not run{': ' + last.reason if last and last.reason else ''}"


def search_fields(search: BatchSearch | None) -> dict[str, Any]:
    """The row fields that say how a batch was found (none for a batch given)."""
    if search is None:
        return {}
    return {"max_batch_bound": search.bound, "max_batch_probes": search.probes_text, "max_batch_predicted": search.predicted,
            "memory_limit_mb": search.limit_bytes / 2**20 if math.isfinite(search.limit_bytes) else math.nan}


def peak_note(search: BatchSearch | None, peak_mem_bytes: float) -> str:
    """The note of a found batch's timed row whose peak memory is above the limit the search ran under: the limit
    bounded the search's worker only; the cell is timed in the run's process (or a pool worker) without it and
    without the worker's malloc setting, warm-up included."""
    if search is None or not (math.isfinite(search.limit_bytes) and math.isfinite(peak_mem_bytes)):
        return ""
    if peak_mem_bytes <= search.limit_bytes:
        return ""
    from archbench.units import mib

    return (f"peak memory {mib(int(peak_mem_bytes))} is above the {mib(int(search.limit_bytes))} limit: the limit "
            "bounded the search's worker, not the process that timed the batch")


def search_to_json(search: BatchSearch | None) -> dict[str, Any] | None:
    """``search`` as JSON data (a work unit's cell: the pool's rows keep how their batch was found)."""
    if search is None:
        return None
    return {"batch": search.batch, "bound": search.bound, "predicted": search.predicted,
            "probes": [[p.batch, p.fits, p.reason] for p in search.probes],
            "limit_bytes": search.limit_bytes if math.isfinite(search.limit_bytes) else None, "limit_how": search.limit_how}


def search_from_json(data: dict[str, Any] | None) -> BatchSearch | None:
    """The inverse of :func:`search_to_json`."""
    if not data:
        return None
    limit = data.get("limit_bytes")
    return BatchSearch(int(data["batch"]), str(data["bound"]), int(data["predicted"]),
                       tuple(Probe(int(b), bool(fits), reason=str(why)) for b, fits, why in data["probes"]),
                       float(limit) if limit is not None else math.nan, str(data.get("limit_how", "")))


def search_from_row(row) -> BatchSearch | None:
    """The search a stored row records (a resumed run keeps the batch it found), or None for a given batch."""
    if not getattr(row, "max_batch_bound", ""):
        return None
    probes = []
    for item in filter(None, (p.strip() for p in row.max_batch_probes.split(","))):
        batch, _, outcome = item.partition(" ")
        probes.append(Probe(int(batch), outcome == "ok"))
    limit = row.memory_limit_mb * 2**20 if math.isfinite(row.memory_limit_mb) else math.nan
    batch = row.batch if any(p.fits for p in probes) else 0
    return BatchSearch(batch, row.max_batch_bound, row.max_batch_predicted, tuple(probes), limit)


# ----------------------------------------------------------------------------------------- the search


def search(probe: Callable[[int], Probe], *, start: int, cap: int | None, limited: bool) -> tuple[int, str, list[Probe]]:
    """The largest batch ``probe`` says fits: from ``start``, doubling (or halving) until one fits and one does
    not, then bisecting until they are within :data:`TOLERANCE`; never above ``cap``. Returns the batch (0: none
    fits), the bound (``max_batch`` when the cap fits, else ``memory_limit`` when ``limited``, else ``oom``) and
    the probes."""
    probes: list[Probe] = []

    def fits(batch: int) -> bool:
        probes.append(probe(batch))
        return probes[-1].fits

    bound = "memory_limit" if limited else "oom"
    batch = max(1, min(start, cap or start))
    fit, fail = (batch, None) if fits(batch) else (0, batch)
    while fail is None:
        if cap is not None and fit >= cap:
            return fit, "max_batch", probes
        batch = fit * 2 if cap is None else min(fit * 2, cap)
        fit, fail = (batch, None) if fits(batch) else (fit, batch)
    while fit == 0:
        if fail == 1:
            return 0, bound, probes
        batch = fail // 2
        fit, fail = (batch, fail) if fits(batch) else (0, batch)
    while fail - fit > max(1, math.floor(fit * TOLERANCE)):
        batch = (fit + fail) // 2
        fit, fail = (batch, fail) if fits(batch) else (fit, batch)
    return fit, bound, probes


class ProbeWorker:
    """The parent's side of a :mod:`archbench.sweep.batch_probe` process: started on the first probe, and again
    after one died (the OOM killer, a crash); stopped by :meth:`close` (a context manager)."""

    def __init__(self, setup: dict[str, Any]):
        self.setup = setup
        self.process: subprocess.Popen | None = None
        self.limit_how = ""
        self._requests = self._replies = None
        self._log = tempfile.TemporaryFile()

    def __enter__(self) -> ProbeWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        from archbench.interrupts import die_with_parent  # a worker never outlives the run

        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(_mmap_threshold())}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "archbench.sweep.batch_probe", str(request_r), str(reply_w)],
                pass_fds=(request_r, reply_w), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env,
                preexec_fn=die_with_parent)
        finally:
            os.close(request_r)
            os.close(reply_w)
        self._requests = os.fdopen(request_w, "w", encoding="utf-8")
        self._replies = os.fdopen(reply_r, "r", encoding="utf-8")
        reply = self._ask(self.setup)
        if reply is None or "error" in reply:
            why = reply["error"] if reply else self._death()
            self.close()
            raise ModelRunError(f"the worker process of the max-batch search could not start: {why}")
        self.limit_how = reply.get("limit", "")

    def _ask(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The worker's reply, or None when it died first."""
        try:
            self._requests.write(json.dumps(request) + "\n")
            self._requests.flush()
            line = self._replies.readline()
        except (BrokenPipeError, OSError):
            return None
        return json.loads(line) if line else None

    def probe(self, batch: int) -> Probe:
        if self.process is None or self.process.poll() is not None:
            self._start()
        reply = self._ask({"batch": batch})
        if reply is None:  # killed mid-probe: the OOM killer's SIGKILL, or a crash of the allocator or driver
            why = self._death()
            self.close()
            return Probe(batch, False, reason=why)
        if "error" in reply:
            if reply.get("cuda"):
                self.close()
            raise ModelRunError(f"batch {batch}: {reply['error']}")
        return Probe(batch, bool(reply["fits"]), float(reply.get("peak_bytes") or math.nan), reply.get("reason", ""))

    def _death(self) -> str:
        code = self.process.wait() if self.process is not None else None
        if code is not None and code < 0:
            return f"the worker was killed by {signal.Signals(-code).name}" + (
                " (the kernel's OOM killer sends it)" if -code == signal.SIGKILL else "")
        self._log.seek(0)
        lines = [x for x in self._log.read().decode("utf-8", "replace").splitlines() if x.strip()]
        return f"the worker exited with code {code}" + (f": {lines[-1][:300]}" if lines else "")

    def close(self) -> None:
        for pipe in (self._requests, self._replies):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        self._requests = self._replies = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _mmap_threshold() -> int:
    from archbench.sweep.batch_probe import MMAP_THRESHOLD

    return MMAP_THRESHOLD


def worker_setup(cell, limit_bytes: int | None, optimizer: str = "none") -> dict[str, Any]:
    """The first request to a probe worker for ``cell`` (its model must be rebuildable in another process)."""
    from archbench.catalog.spec import model_to_json
    from archbench.sweep.cells import split_target

    return {"model": model_to_json(cell.source), "device": split_target(cell.device)[0], "mode": cell.mode,
            "input": cell.input_str, "dtype": cell.dtype, "channels_last": cell.channels_last, "threads": cell.threads,
            "limit_bytes": limit_bytes, "optimizer": optimizer}


def available_bytes() -> int | None:
    """``MemAvailable`` of /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def predicted_batch(cell, budget_bytes: float | None) -> int:
    """The largest batch the estimate of ``cell``'s step (:mod:`archbench.memory_estimate`, measured on
    the CPU) puts within ``budget_bytes``; 0 when there is no budget or the estimate cannot be made."""
    if budget_bytes is None or not math.isfinite(budget_bytes):
        return 0
    try:
        from archbench.memory_estimate import estimate_memory

        estimate = estimate_memory(cell.source, cell.input, batch=1, mode=cell.mode, dtype=cell.dtype)
        return estimate.largest_batch(budget_bytes)
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - the prediction is only where the search starts; the probes decide
        return 0


def device_budget(device: str, limit_bytes: int | None) -> tuple[int | None, float]:
    """The limit the worker enforces (None: the device's own memory) and the budget the prediction aims at."""
    from archbench.sweep.cells import split_target

    device = split_target(device)[0]
    if limit_bytes is not None:
        return limit_bytes, float(limit_bytes)
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return None, float(free)
    available = available_bytes()
    if available is None:
        return None, math.nan
    limit = int(available * AVAILABLE_SHARE)
    return limit, float(limit)


def find_max_batch(cell, settings: MaxBatchSettings = MaxBatchSettings(),
                   on_probe: Callable[[Any, Probe], None] | None = None) -> BatchSearch:
    """The largest batch of ``cell``'s step (its ``batch`` is ignored) — see the module docstring."""
    limit, budget = device_budget(cell.device, settings.memory_limit_bytes)
    predicted = predicted_batch(cell, budget)
    start = predicted if predicted > 0 else 8

    with ProbeWorker(worker_setup(cell, limit)) as worker:
        def probe(batch: int) -> Probe:
            result = worker.probe(batch)
            if on_probe is not None:
                on_probe(cell, result)
            return result

        batch, bound, probes = search(probe, start=start, cap=settings.max_batch,
                                      limited=settings.memory_limit_bytes is not None)
        how = worker.limit_how
    return BatchSearch(batch, bound, predicted, tuple(probes), float(limit) if limit is not None else math.nan, how)


# ------------------------------------------------------------------------------------------- planning


def split_batches(batches: Iterable[int | str]) -> tuple[list[int], bool]:
    """The given batches and whether ``max`` is among them."""
    given = [int(b) for b in batches if b != MAX]
    return given, any(b == MAX for b in batches)


def _search_key(cell) -> tuple:
    key = cell.key()
    return key._replace(batch=0)


def plan_with_max(sources: Sequence[Any], devices: Sequence[str], batches: Sequence[int | str], inputs, modes, dtypes,
                  channels_last: bool = False, compiled: bool = False, threads: int | None = None, *,
                  settings: MaxBatchSettings = MaxBatchSettings(), previous: Iterable[Any] = (),
                  on_probe: Callable[[Any, Probe], None] | None = None, cells_of: Callable[..., list] | None = None,
                  backends: Sequence[str] | None = None) -> list:
    """The cells of :func:`archbench.sweep.cells.plan_cells` where ``batches`` may hold ``max``: for each model,
    device, input, dtype and mode, a cell at the batch :func:`find_max_batch` finds (a row of ``previous`` —
    a resumed run's — that records a search gives its batch instead), in plan order (batches ascending); a
    found batch that is also given is one cell."""
    from archbench.sweep.cells import plan_cells

    plan = cells_of or plan_cells
    given, wants_max = split_batches(batches)
    more = {"backends": backends} if backends is not None else {}
    cells = plan(sources, devices, given, inputs, modes, dtypes, channels_last, compiled, threads, **more) if given else []
    if not wants_max:
        return cells
    stored = {_search_key(r): r for r in previous if getattr(r, "max_batch_bound", "")}
    found = []
    for template in plan(sources, devices, [1], inputs, modes, dtypes, channels_last, compiled, threads, **more):
        row = stored.get(_search_key(template))
        result = search_from_row(row) if row is not None else find_max_batch(template, settings, on_probe)
        found.append(dataclasses.replace(template, batch=result.batch or 1, search=result))
    return ordered(cells, found)


def ordered(given: list, found: list) -> list:
    """Given and found cells in plan order (model, device, input, dtype, batch, mode); a found cell replaces a
    given one of the same key."""
    found_keys = {c.key() for c in found}
    cells = [c for c in given if c.key() not in found_keys] + found
    groups = list(dict.fromkeys((c.source, c.device, c.input, c.dtype) for c in (*given, *found)))
    modes = list(dict.fromkeys(c.mode for c in (*given, *found)))
    return sorted(cells, key=lambda c: (groups.index((c.source, c.device, c.input, c.dtype)), c.batch, modes.index(c.mode)))


def check_searchable(executor_kind: str, targets: Any = ()) -> None:
    """The search runs on this machine: cells measured elsewhere (Slurm jobs, targets) cannot use it."""
    if executor_kind == "slurm" or targets:
        raise UsageError("batch 'max' is searched on the machine that runs archbench, and these cells run as Slurm "
                         "jobs elsewhere: give the batch sizes, or run the search where the jobs run (the local executor).")


def measure_step_peak(source, input, batch: int, *, mode: str = "train", dtype: str = "fp32", optimizer: str = "none",
                      device: str = "cpu", threads: int = 1) -> Probe:
    """The measured peak memory of ``source``'s step at ``batch`` (with ``optimizer``'s step after it), in a fresh
    worker process: the peak resident set above the process's before the model was built on the CPU,
    ``max_memory_allocated`` above the same point on CUDA (:class:`archbench.timing.memory.MemoryTracker`).
    ``fits`` is False when memory ran out. The check of :mod:`archbench.memory_estimate`."""
    from archbench.sweep.cells import Cell

    cell = Cell(source.name, source, device, mode, int(batch), tuple(input or source.input), dtype, threads=threads)
    with ProbeWorker(worker_setup(cell, None, optimizer)) as worker:
        return worker.probe(int(batch))
