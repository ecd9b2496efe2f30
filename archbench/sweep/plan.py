"""What a run will do, said before it starts, and how long it has left while it runs.

* :class:`Plan` — the grid's size by axis and the per-cell budget: ``12 cells (2 models × 3 batches × 2
  modes), 8 s budget per cell (1.6 min of timing), writing reports/default/``. A cell stops earlier once its
  CI is precise, later only when its step is so slow that its fewest samples overrun the budget; building
  and counting the models come on top.
* :class:`Eta` — the time left, from the cells' budgets before any cell has finished, then from the
  finished cells' actual times; never below what the remaining cells take at the fastest pace seen (a
  cell measured interleaved with others finishes with its grid point, so cells that finish together count
  as one stretch of work shared among them). The clock is injected.
* :data:`QUICK` — the ``--quick`` preset: ±10% and 1 s per cell, for a first look, not a result to cite.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from archbench.errors import PATH_ECHO_LIMIT, quoted
from archbench.timing.options import MeasureOptions

QUICK = MeasureOptions(precision=0.10, max_time_s=1.0)
SAME_STRETCH_S = 0.05  # cells finishing this close together were measured together


@dataclass(frozen=True)
class Plan:
    """A run's grid by axis (``axes``: name → how many; axes of one value are not spelled out) and its
    per-cell time budget."""

    cells: int
    axes: tuple[tuple[str, int], ...]
    budget_s: float
    out: str = ""

    def describe(self) -> str:
        shown = [f"{n} {_plural(name)}" for name, n in self.axes if n > 1]
        grid = f" ({' × '.join(shown)})" if shown else ""
        head = f"{self.cells} cell{'s' * (self.cells != 1)}{grid}"
        if math.isfinite(self.budget_s):
            # a budget, not a bound: a cell whose step takes longer than a fifth of it still takes its 5 samples
            head += f", {self.budget_s:g} s budget per cell ({_duration(self.cells * self.budget_s)} of timing)"
        shown_out = self.out if len(self.out) <= PATH_ECHO_LIMIT else quoted(self.out, PATH_ECHO_LIMIT)
        return head + (f", writing {shown_out}" if self.out else "")


def _plural(name: str) -> str:
    return name + ("es" if name.endswith(("ch", "s", "x")) else "s")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Eta:
    """Seconds left in a run of ``total`` cells with ``budget_s`` each (``inf``: no budget)."""

    total: int
    budget_s: float = math.inf
    done: int = 0
    clock: Callable[[], float] = time.monotonic
    started_s: float = field(init=False)
    _last_s: float = field(init=False)
    _stretches: list[tuple[float, int]] = field(default_factory=list, init=False)  # (seconds, cells)

    def __post_init__(self) -> None:
        self.started_s = self._last_s = self.clock()
        self._measured = 0

    def cell_finished(self) -> None:
        now = self.clock()
        gap = now - self._last_s
        if self._stretches and gap < SAME_STRETCH_S:
            seconds, cells = self._stretches[-1]
            self._stretches[-1] = (seconds + gap, cells + 1)
        else:
            self._stretches.append((gap, 1))
        self._last_s = now
        self.done += 1
        self._measured += 1

    def remaining_s(self) -> float:
        left = max(self.total - self.done, 0)
        if left == 0:
            return 0.0
        now = self.clock()
        if not self._measured:
            return max(left * self.budget_s - (now - self.started_s), 0.0) if math.isfinite(self.budget_s) else math.nan
        pace = (self._last_s - self.started_s) / self._measured  # seconds per cell so far
        fastest = min(seconds / cells for seconds, cells in self._stretches)
        in_current = now - self._last_s
        estimate = left * pace - in_current  # the current cell has been running for in_current already
        floor = (left - 1) * fastest  # the cells not started yet, at the fastest pace seen
        return max(estimate, floor, 0.0)
