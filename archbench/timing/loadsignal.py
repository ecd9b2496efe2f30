"""A load signal measured where the time is: how busy the machine was during one burst of samples.

:mod:`archbench.timing.load` checks a whole cell (a calibration kernel before and after it). Under a load
that comes and goes — a CI neighbour, a browser tab, a square wave of busy processes — half of a cell's
samples can be slowed while the kernel, timed at the ends, sees nothing. The interleaver therefore reads
two counters around **every burst**, each two file reads (microseconds, no work of its own):

* **CPU pressure** (``/proc/pressure/cpu``, Linux ≥ 4.20 with PSI): the share of the burst's wall time in
  which some runnable task waited for a CPU. A quiet machine reads ~0; a 1-thread cell on a 2-core machine
  with two busy processes reads ~1 — whatever the cell's own thread count, because it counts waiting,
  not use. This is the signal that predicts a burst's slowdown (``benchmarks/busy_machine.py``).
* **Other processes' CPU time** (``/proc/stat`` busy time minus this process's): the cores others kept
  busy, against the cores the cell leaves free. This is the fallback where PSI is absent (older kernels,
  some containers); it under-reads a load that shares the cell's own cores.

:class:`LoadProbe` takes the readers and the clock as arguments, so decisions are tested on scripted
readings. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from archbench.timing.load import BURST_STALL_THRESHOLD, SPARE_CORE_MARGIN, STALL_THRESHOLD, cpu_seconds, cpu_stall_us

LOADED_SHARE = 0.1  # more than this share of a cell's bursts (or sampling windows) under CPU pressure -> under load


def runnable_others() -> int:
    """Runnable tasks on the machine besides this process's running thread (``procs_running`` − 1)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("procs_running"):
                    return max(int(line.split()[1]) - 1, 0)
    except (OSError, ValueError):
        pass
    return 0


@dataclass(frozen=True)
class Clocks:
    """The counters at one instant: wall seconds, machine busy and own CPU seconds, PSI stall µs."""

    wall_s: float
    busy_s: float
    own_s: float
    stall_us: float


@dataclass(frozen=True)
class WindowLoad:
    """How busy the machine was over one window: ``stall`` (share of the window some task waited for a CPU;
    NaN without PSI) and ``other_cores`` (cores other processes kept busy, on average)."""

    wall_s: float
    stall: float
    other_cores: float

    def loaded(self, spare_cores: float, stall_threshold: float = STALL_THRESHOLD) -> bool:
        if math.isfinite(self.stall):
            return self.stall > stall_threshold
        return self.other_cores > spare_cores + SPARE_CORE_MARGIN


@dataclass
class LoadProbe:
    """Reads :class:`Clocks` and turns two of them into a :class:`WindowLoad` (readers injectable)."""

    clock: Callable[[], float] = time.perf_counter
    cpu_times: Callable[[], tuple[float, float]] = cpu_seconds
    stall: Callable[[], float] = cpu_stall_us
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def now(self) -> Clocks:
        busy, own = self.cpu_times()
        return Clocks(self.clock(), busy, own, self.stall())

    def since(self, start: Clocks) -> WindowLoad:
        end = self.now()
        wall = end.wall_s - start.wall_s
        if wall <= 0:
            return WindowLoad(0.0, math.nan, math.nan)
        others = ((end.busy_s - start.busy_s) - (end.own_s - start.own_s)) / wall
        stall = (end.stall_us - start.stall_us) / 1e6 / wall
        return WindowLoad(wall, min(max(stall, 0.0), 1.0) if math.isfinite(stall) else math.nan, max(others, 0.0))


@dataclass
class LoadWindows:
    """The load read over consecutive windows of a cell timed alone (:func:`archbench.timing.timer.measure`):
    each window lasts ``window_s`` of the probe's clock (at least one sample) and is loaded when some task
    waited for a CPU over :data:`~archbench.timing.load.BURST_STALL_THRESHOLD` of it — the interleaved bursts'
    rule. A cell is under load when more than :data:`LOADED_SHARE` of its samples ran in loaded windows.

    Why per window and not over the whole cell: a square wave's load covers part of the cell, and on a 2-core
    machine a 1-thread cell beside two busy processes makes PSI read about half the time, not all of it (it
    averages the CPUs, and one of them runs a single task) — a whole-cell average of 0.5 × 40% is below any
    threshold that a quiet machine's background stays under, while 40% of the samples in loaded windows is not."""

    probe: LoadProbe
    spare_cores: float = 0.0
    window_s: float = 0.1
    windows: list[tuple[int, bool]] = field(default_factory=list)  # (samples in the window, loaded)
    _start: Clocks | None = None
    _count: int = 0

    def start(self) -> None:
        self._start, self._count = self.probe.now(), 0

    def sampled(self) -> None:
        """One more sample taken; the window closes once it has lasted ``window_s``."""
        self._count += 1
        if self._start is not None and self.probe.clock() - self._start.wall_s >= self.window_s:
            self._close()

    def finish(self) -> None:
        if self._count:
            self._close()
        self._start = None

    def _close(self) -> None:
        window = self.probe.since(self._start)
        self.windows.append((self._count, window.loaded(self.spare_cores, BURST_STALL_THRESHOLD)))
        self.start()

    @property
    def loaded_share(self) -> float:
        """The share of the samples taken in loaded windows (0 without any)."""
        total = sum(count for count, _ in self.windows)
        return sum(count for count, loaded in self.windows if loaded) / total if total else 0.0

    @property
    def under_load(self) -> bool:
        return self.loaded_share > LOADED_SHARE


@dataclass(frozen=True)
class BusyMachine:
    """What a short look at an idle moment found: the machine is busy when some task waited for a CPU a
    quarter of the time (or, without PSI, other processes kept more than half a core busy)."""

    stall: float
    other_cores: float
    runnable_others: int

    @property
    def busy(self) -> bool:
        return WindowLoad(1.0, self.stall, self.other_cores).loaded(spare_cores=0.0)

    def describe(self) -> str:
        psi = f", CPU pressure {self.stall:.0%} of the time" if math.isfinite(self.stall) else ""
        return (f"the machine is busy: {self.runnable_others} other runnable process(es), other processes using "
                f"{self.other_cores:.1f} core(s){psi}; results may be inflated")


def look_at_machine(probe: LoadProbe | None = None, seconds: float = 0.25,
                    wait: Callable[[float], None] = time.sleep,
                    runnable: Callable[[], int] = runnable_others) -> BusyMachine:
    """How busy the machine is while this process waits ``seconds`` (before a run's first cell)."""
    probe = probe or LoadProbe()
    start = probe.now()
    wait(seconds)
    window = probe.since(start)
    return BusyMachine(window.stall, window.other_cores, runnable())
