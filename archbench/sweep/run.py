"""A grid of timing cells -> streamed :class:`~archbench.rows.ResultRow` s, appended to a CSV as each
cell finishes, resumable, surviving OOMs, failing models and Ctrl-C.

* :func:`plan_cells` expands models x devices x inputs x dtypes x batches x modes into :class:`Cell` s;
* :func:`~archbench.sweep.cell_measure.measure_cell` (:mod:`archbench.sweep.cell_measure`) builds one
  cell's model and step, times it and returns its row — an OOM or a failing model is a row with status
  ``oom``/``error``, never an exception;
* :func:`run_sweep` runs the cells in order, appends each row to the CSV at once (flushed), skips the
  cells already in the file with ``resume=True``, and on Ctrl-C returns what it finished with
  ``interrupted=True``; with ``interleave``, the models sharing a grid point are measured in alternating
  rounds (:mod:`archbench.sweep.interleave`). Progress goes to an optional listener
  (:class:`SweepListener`); nothing prints.

torch is imported inside functions only, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archbench.interrupts import interrupts_deferred
from archbench.listeners import notify as _notify
from archbench.results.sinks import CsvSink, WriteFailure, csv_failure_warning, keeps_rows
from archbench.rows import ResultRow, check_same_sweep
from archbench.rows import rows_to_resume as _previous_rows
from archbench.sweep.cell_measure import (
    RunCaches,
    free_memory,
    long_lived_frozen,
    measure_cell,
    measure_device_peaks,
    warm_process,
)
from archbench.sweep.cells import Cell
from archbench.sweep.interleave import Interleaving, grid_points, measure_point
from archbench.timing.devices import require_device
from archbench.timing.load import LoadMonitor, with_load
from archbench.timing.loadsignal import look_at_machine
from archbench.timing.options import MeasureOptions
from archbench.timing.precision import CUDNN_BENCHMARK

# ----------------------------------------------------------------------------------------- listener


class SweepListener:
    """Progress callbacks of :func:`run_sweep` (all optional; the CLI draws its progress bar from them).

    A listener may be any object; missing methods are simply not called."""

    def sweep_started(self, total: int, already_done: int) -> None:
        """``total`` planned cells, ``already_done`` of them skipped (found in the CSV)."""

    def cell_started(self, cell: Cell, index: int, todo: int) -> None:
        """Cell ``index`` (0-based) of the ``todo`` cells this run measures."""

    def cell_phase(self, cell: Cell, phase: str) -> None:
        """``building``, ``counting FLOPs``, ``compiling`` (``--compile``), ``warming up``, ``sampling``."""

    def cell_finished(self, cell: Cell, row: ResultRow, index: int, todo: int) -> None:
        """The row is already on disk."""

    def warning(self, message: str) -> None:
        """Something the user should know before the cells run (a skipped unfinished line, too many threads)."""


# ------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did: rows measured now, rows found from an earlier run, and whether Ctrl-C cut it."""

    out_csv: Path
    cells: tuple[Cell, ...]
    measured: tuple[ResultRow, ...]  # this run, in order (raw samples included)
    previous: tuple[ResultRow, ...]  # planned cells already in the CSV (resume), skipped
    interrupted: bool = False
    peaks_tflops: dict[str, float] = field(default_factory=dict, hash=False)  # "cpu/fp32" -> TFLOP/s used by its rows
    warnings: tuple[str, ...] = ()  # also sent to the listener's ``warning`` as they arise
    write_failure: WriteFailure | None = None  # why the CSV stopped taking rows (archbench.results.sinks)
    unwritten: tuple[ResultRow, ...] = ()  # measured rows the CSV lacks (kept by the store, or lost)
    stopped: bool = False  # the sweep stopped early: no sink kept its rows any more

    @property
    def rows(self) -> list[ResultRow]:
        """A row for every finished planned cell, in plan order."""
        by_key = {r.key(): r for r in (*self.previous, *self.measured)}
        return [by_key[c.key()] for c in self.cells if c.key() in by_key]

    @property
    def all_failed(self) -> bool:
        """Every finished cell failed (no ``ok`` row) — there was at least one."""
        rows = self.rows
        return bool(rows) and all(r.status != "ok" for r in rows)

    @property
    def remaining(self) -> int:
        return len(self.cells) - len(self.rows)


# ------------------------------------------------------------------------------------------- running


def run_sweep(
    cells: Sequence[Cell],
    out_csv: str | Path,
    *,
    resume: bool,
    options: MeasureOptions = MeasureOptions(),
    listener: Any = None,
    caches: RunCaches | None = None,
    interleave: Interleaving | None = None,
) -> SweepResult:
    """Measure ``cells`` in order, appending each row to ``out_csv`` (flushed and fsynced) as it finishes.

    ``resume=True`` skips cells already in ``out_csv`` (any status); ``resume=False`` refuses a file that
    already holds rows rather than mixing or overwriting them. Unknown spec arguments fail before any cell
    runs. Ctrl-C ends the sweep after the last finished row is saved and returns ``interrupted=True``.

    With ``interleave``, the cells still to measure that share a grid point (all but the model equal) are
    measured together in alternating rounds (:mod:`archbench.sweep.interleave`), and their rows are written
    together when the point is done."""
    out_csv = Path(out_csv)
    cells = tuple(cells)
    stored = _previous_rows(out_csv, resume)
    caches = caches if caches is not None else RunCaches()
    check_same_sweep(out_csv, stored.rows, (c.key() for c in cells), options)
    if stored.torn_at is not None:  # rows appended next must start on a line of their own
        os.truncate(out_csv, stored.torn_at)
    warnings = stored.warnings
    done = {r.key(): r for r in stored.rows}
    previous = tuple(done[c.key()] for c in cells if c.key() in done)
    todo = [c for c in dict.fromkeys(cells) if c.key() not in done]
    for device in dict.fromkeys(c.device for c in todo):
        require_device(device)
    check_buildable(todo)
    warnings += threads_warnings(c.threads for c in todo)
    if todo and (machine := look_at_machine(seconds=0.1)).busy:  # said once, before the first cell
        warnings += (machine.describe(),)
    for warning in warnings:
        _notify(listener, "warning", warning)

    _notify(listener, "sweep_started", len(cells), len(cells) - len(todo))
    measured: list[ResultRow] = []
    peaks: dict[str, float] = {}
    interrupted = stopped = False
    csv = CsvSink(out_csv)
    with _sweep_settings(todo), contextlib.ExitStack() as heap:
        try:
            for device in dict.fromkeys(c.device for c in todo):
                warm_process(device)
            heap.enter_context(long_lived_frozen())  # the cells' collections skip the imports' objects
            measure_device_peaks(todo, caches.peaks)
            load = LoadMonitor() if todo else None
            for threads in dict.fromkeys(c.threads for c in todo):
                load.calibrate(threads)  # the baseline, before any cell runs
            for first, group in _measured_together(todo, interleave):
                for offset, cell in enumerate(group):
                    _notify(listener, "cell_started", cell, first + offset, len(todo))
                window = _LoadWindow(load, group[0])

                def on_phase(c: Cell, phase: str, w: _LoadWindow = window) -> None:
                    w.phase(phase)
                    _notify(listener, "cell_phase", c, phase)

                rows = _measure_group(group, options, interleave, caches, on_phase)
                reading = window.reading()
                rows = [with_load(row, reading) for row in rows]
                free_memory()
                # Ctrl-C or SIGTERM never leaves half a CSV line, nor a row on disk that the result (and the
                # listener, which keeps the raw samples) does not have.
                with interrupts_deferred():
                    failed_before = csv.failure is not None
                    csv.append(rows)  # a write error is kept in csv.failure: the store still gets the rows
                    measured.extend(rows)
                    for cell, row in zip(group, rows):
                        if math.isfinite(row.peak_fraction):  # the peak the row was measured against
                            peaks[f"{cell.device}/{cell.dtype}"] = caches.peaks.ceiling(cell.device, cell.dtype, cell.threads)[0]
                    for offset, (cell, row) in enumerate(zip(group, rows)):
                        _notify(listener, "cell_finished", cell, row, first + offset, len(todo))
                    if csv.failure is not None:
                        store_keeps = keeps_rows(listener)
                        if not failed_before:
                            _notify(listener, "warning", csv_failure_warning(csv.failure, store_keeps))
                        if not store_keeps:  # measuring on would lose every further cell
                            stopped = True
                            break
        except KeyboardInterrupt:
            interrupted = True
            free_memory()
    return SweepResult(out_csv, cells, tuple(measured), previous, interrupted, peaks, warnings, csv.failure,
                       tuple(csv.unwritten), stopped)


def _measured_together(cells: Sequence[Cell], interleave: Interleaving | None) -> list[tuple[int, tuple[Cell, ...]]]:
    """The cells in the order they are measured, grouped as they are measured together — one cell at a time,
    or with ``interleave`` one grid point at a time — each group with the index of its first cell."""
    groups = grid_points(cells) if interleave is not None else [(cell,) for cell in cells]
    starts = itertools.accumulate((len(g) for g in groups), initial=0)
    return list(zip(starts, groups))


def _measure_group(cells: tuple[Cell, ...], options: MeasureOptions, interleave: Interleaving | None, caches: RunCaches,
                   on_phase: Callable[[Cell, str], None]) -> list[ResultRow]:
    """The rows of cells measured together: a cell on its own, or one grid point's cells interleaved."""
    if len(cells) == 1:
        cell = cells[0]
        return [measure_cell(cell, options, on_phase=lambda phase: on_phase(cell, phase), caches=caches)]
    return measure_point(cells, options, interleave, caches=caches, on_phase=on_phase)


class _LoadWindow:
    """The load check's window over one cell (or the cells of a grid point measured together). For a
    compiled cell it reopens when the warm-up starts: torch.compile's worker processes are archbench's own
    work, not another process loading the machine."""

    def __init__(self, load, cell: Cell):
        self.load, self.cell = load, cell
        self.window = load.before_cell(cell.threads)

    def phase(self, name: str) -> None:
        if name == "warming up" and self.cell.backend != "eager":  # AOTInductor's compiler, too
            self.window = self.load.before_cell(self.cell.threads)

    def reading(self):
        return self.load.after_cell(self.window)


def threads_warnings(threads: Iterable[int]) -> tuple[str, ...]:
    """A warning for each thread count above the cores this process may run on (they would time-share)."""
    cores = len(os.sched_getaffinity(0))
    return tuple(f"threads {n} is more than the {cores} core(s) this process may use: the threads share cores, so "
                 "the times measure oversubscription, not the model." for n in sorted(set(threads)) if n > cores)


def check_buildable(cells: Iterable[Cell]) -> None:
    """Build each distinct model on the ``meta`` device (no memory, no time), so a bad spec or override
    is a :class:`~archbench.errors.SpecError` before anything runs, and a model too large for the devices
    its cells run on a :class:`~archbench.errors.ResourceLimitError` (:mod:`archbench.resources`)."""
    from archbench.resources import meta_build_within_bounds

    cells = tuple(cells)
    for source in dict.fromkeys(c.source for c in cells):
        meta_build_within_bounds(source, (c.device for c in cells if c.source == source))


@contextlib.contextmanager
def _sweep_settings(cells: Sequence[Cell]):
    """Thread count and cuDNN autotuning as the sweep needs them, restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if any(c.device.startswith("cuda") for c in cells):
        torch.backends.cudnn.benchmark = CUDNN_BENCHMARK
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn_benchmark


