"""Was something else loading the machine while a cell was measured?

A cell's samples can look steady and precise while another process takes half the CPU: the whole cell is
slower, evenly. Two checks, either of which flags the row ``under_load``:

* **Calibration.** A short, fixed kernel (:class:`MatmulKernel`: 24 products of 256x256 fp32 matrices,
  ~5-10 ms on a quiet 2-core machine, at the cell's thread count, median of 3) is timed before and after
  each cell and compared with the sweep's baseline — its fastest calibration so far, normally the one
  taken before the first cell. ``load_ratio = max(before, after) / baseline``; above
  :data:`LOAD_THRESHOLD` (1.5) the cell is under load: a quiet shared VM drifts by about ±20%, while one
  busy process on a core the cell uses roughly doubles the kernel's time (stolen VM time slows it too).
* **Other processes' CPU time.** A baseline taken while the machine was already busy hides the load from
  the ratio, so the CPU time the whole machine spent busy during the cell (``/proc/stat``, stolen time
  included) minus this process's own is compared with the cores the cell leaves free: more than
  :data:`SPARE_CORE_MARGIN` (half a core) beyond them means something competed with the cell.

:class:`LoadMonitor` takes the kernel, the clock and the CPU-time reader as arguments, so the decision is
testable without sleeping or loading the machine. torch is imported only by the default kernel.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from archbench.rows import ResultRow

LOAD_THRESHOLD = 1.5  # calibration this much slower than the baseline -> measured under load
STALL_THRESHOLD = 0.25  # some task waited for a CPU this share of the time (PSI) -> measured under load
# A burst (a fraction of a second of one model's samples) is judged stricter: a tenth of it stalled means it
# overlapped a load change or a neighbour's time slice, and its round's ratio is wrong in an unknown direction;
# a whole cell's median withstands a minority of slowed samples (benchmarks/busy_machine.py measures both).
BURST_STALL_THRESHOLD = 0.1
PSI_CPU = "/proc/pressure/cpu"
SPARE_CORE_MARGIN = 0.5  # other processes using this much more than the cores a cell leaves free -> load
CALIBRATION_SIDE = 256
CALIBRATION_PRODUCTS = 24


class MatmulKernel:
    """The calibration kernel: ``CALIBRATION_PRODUCTS`` fp32 matrix products of fixed operands, run at a
    given intra-op thread count (the cell's, so it runs on the cores the cell uses)."""

    def __init__(self, side: int = CALIBRATION_SIDE, products: int = CALIBRATION_PRODUCTS):
        import torch

        generator = torch.Generator().manual_seed(0)
        self._a = torch.randn(side, side, generator=generator)
        self._b = torch.randn(side, side, generator=generator)
        self._products = products

    def __call__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        for _ in range(self._products):
            torch.mm(self._a, self._b)


def cpu_seconds() -> tuple[float, float]:
    """``(busy, own)``: CPU seconds the whole machine has spent busy since boot (``/proc/stat``: user, nice,
    system, irq, softirq and steal) and this process's CPU seconds; ``busy`` is NaN without ``/proc``."""
    own = time.process_time()
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return math.nan, own
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), own


def cpu_stall_us(path: str = PSI_CPU) -> float:
    """Microseconds some task has waited for a CPU since boot (PSI ``some total``); NaN without PSI."""
    try:
        with open(path, encoding="ascii") as fh:
            first = fh.readline().split()
    except OSError:
        return math.nan
    totals = [float(item[len("total="):]) for item in first[1:] if item.startswith("total=")]
    return totals[0] if totals else math.nan


@dataclass(frozen=True)
class LoadReading:
    """The load around one cell: ``ratio`` (slower calibration / baseline) and ``other_cores`` (CPU cores
    other processes kept busy during the cell, on average) against ``spare_cores`` (left free by it)."""

    ratio: float
    threshold: float = LOAD_THRESHOLD
    other_cores: float = math.nan
    spare_cores: float = math.inf
    stall: float = math.nan  # share of the cell's wall time some task waited for a CPU (PSI); NaN without PSI

    @property
    def slowed(self) -> bool:
        return self.ratio > self.threshold

    @property
    def crowded(self) -> bool:
        return self.other_cores > self.spare_cores + SPARE_CORE_MARGIN

    @property
    def under_load(self) -> bool:
        """CPU pressure decides where the kernel reports it: it is measured over the whole cell and counts
        waiting, not use, so it neither misses a load that comes and goes between the calibrations nor
        mistakes a slow calibration for a slow cell (benchmarks/busy_machine.py). Without PSI, the
        calibration and the other processes' CPU time."""
        if math.isfinite(self.stall):
            return self.stall > STALL_THRESHOLD
        return self.slowed or self.crowded


@dataclass(frozen=True)
class CellWindow:
    """What :meth:`LoadMonitor.before_cell` saw: the calibration ratio and the CPU clocks."""

    threads: int
    ratio: float
    wall_s: float
    busy_s: float
    own_s: float
    stall_us: float = math.nan


@dataclass
class LoadMonitor:
    """Times the calibration kernel (median of ``repeats`` runs) and keeps a baseline per thread count —
    the fastest calibration seen, so a baseline taken while the machine happened to be busy is replaced by
    the next quiet one — and measures other processes' CPU time around each cell."""

    kernel: Callable[[int], object] = field(default_factory=MatmulKernel)
    clock: Callable[[], float] = time.perf_counter
    cpu_times: Callable[[], tuple[float, float]] = cpu_seconds
    stall_us: Callable[[], float] = cpu_stall_us
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    threshold: float = LOAD_THRESHOLD
    repeats: int = 3
    baselines_s: dict[int, float] = field(default_factory=dict)

    def kernel_time(self, threads: int) -> float:
        times = []
        for _ in range(self.repeats):
            start = self.clock()
            self.kernel(threads)
            times.append(self.clock() - start)
        return statistics.median(times)

    def calibrate(self, threads: int) -> None:
        """Take (or improve) the baseline for ``threads`` — before the first cell, while nothing runs."""
        self.ratio(threads)

    def ratio(self, threads: int) -> float:
        """This calibration's time over the baseline for ``threads`` (1.0 for the first one)."""
        seconds = self.kernel_time(threads)
        baseline = self.baselines_s.setdefault(threads, seconds)
        self.baselines_s[threads] = min(baseline, seconds)
        return seconds / baseline if baseline > 0 else math.nan

    def before_cell(self, threads: int) -> CellWindow:
        ratio = self.ratio(threads)
        busy, own = self.cpu_times()
        return CellWindow(threads, ratio, self.clock(), busy, own, self.stall_us())

    def after_cell(self, window: CellWindow) -> LoadReading:
        busy, own = self.cpu_times()
        stall_us = self.stall_us()
        wall = self.clock() - window.wall_s
        others = ((busy - window.busy_s) - (own - window.own_s)) / wall if wall > 0 else math.nan
        stall = min(max((stall_us - window.stall_us) / 1e6 / wall, 0.0), 1.0) if wall > 0 else math.nan
        after = self.ratio(window.threads)
        return LoadReading(max(window.ratio, after), self.threshold, others, max(self.cores - window.threads, 0),
                           stall)


def with_load(row: ResultRow, reading: LoadReading) -> ResultRow:
    """``row`` with its ``load_ratio`` and ``under_load`` flag (timed rows only: a failed cell has no
    timing to discount). A lone row already flagged by the load over its sampling windows
    (:class:`archbench.timing.loadsignal.LoadWindows`, the finer reading) stays flagged."""
    if row.status != "ok" or not math.isfinite(reading.ratio):
        return row
    if row.rounds:  # interleaved: its bursts were read one by one (archbench.timing.loadsignal), a finer reading
        return row
    return dataclasses.replace(row, load_ratio=round(reading.ratio, 3), under_load=row.under_load or reading.under_load)
