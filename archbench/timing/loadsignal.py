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

from archbench.timing.load import SPARE_CORE_MARGIN, STALL_THRESHOLD, cpu_seconds, cpu_stall_us


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
