"""How a cell is measured: one frozen :class:`MeasureOptions` with ONE set of defaults, used by ``bench``,
``compare``, study files and the Python API alike (no torch import)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_PRECISION = 0.03  # stop once the 95% CI of the median is within ±3% of it
DEFAULT_MAX_TIME_S = 8.0  # per-cell budget, warm-up included
DEFAULT_MIN_SAMPLES = 5
DEFAULT_MAX_SAMPLES = 10_000


@dataclass(frozen=True)
class WarmupPolicy:
    """When the warm-up stops: after ``min_iters`` iterations (1; 3 for ``torch.compile``, whose first
    call compiles) once the last ``steady_window`` iterations agree within ``steady_tolerance`` and at
    least ``min_time_s`` has passed; or, whatever the agreement, once ``budget_share`` of the cell's time
    budget (``default_budget_s`` without one) is spent — a step that takes 15 s gets one warm-up
    iteration, not ten. An iteration that would overrun the warm-up budget is not started."""

    min_iters: int = 1
    steady_window: int = 3
    steady_tolerance: float = 0.05
    min_time_s: float = 0.1
    budget_share: float = 0.25
    default_budget_s: float = 5.0
    max_iters: int = 1000

    def budget_s(self, max_time_s: float | None) -> float:
        return self.default_budget_s if max_time_s is None else self.budget_share * max_time_s


@dataclass(frozen=True)
class MeasureOptions:
    """The stopping rules of one cell: sample until the 95% CI of the median is within ``precision`` of
    it, ``max_time_s`` (warm-up included; ``None``: no budget) is spent, or ``max_samples`` are taken —
    never fewer than ``min_samples``."""

    precision: float = DEFAULT_PRECISION
    max_time_s: float | None = DEFAULT_MAX_TIME_S
    min_samples: int = DEFAULT_MIN_SAMPLES
    max_samples: int = DEFAULT_MAX_SAMPLES
    warmup: WarmupPolicy = field(default_factory=WarmupPolicy)

    def __post_init__(self) -> None:
        from archbench import arguments as check  # types first: a string here would fail inside a comparison

        check.number(self.precision, "precision", "a fraction between 0 and 1 (0.02 means ±2%)")
        if self.max_time_s is not None:
            check.number(self.max_time_s, "max_time_s", "a positive number of seconds, or None")
        check.integer(self.min_samples, "min_samples")
        check.integer(self.max_samples, "max_samples")
        check.instance(self.warmup, "warmup", WarmupPolicy, "a WarmupPolicy")
        if not 0 < self.precision < 1:
            raise ValueError(f"precision {self.precision!r} is not a fraction between 0 and 1 (0.02 means ±2%).")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ValueError(f"max_time_s {self.max_time_s!r} is not a positive number of seconds (or None).")
        if int(self.min_samples) < 1 or int(self.max_samples) < int(self.min_samples):
            raise ValueError(f"min_samples {self.min_samples!r} and max_samples {self.max_samples!r} must satisfy "
                             "1 <= min_samples <= max_samples.")

    @property
    def budget_s(self) -> float:
        """``max_time_s`` as a number (``inf`` without a budget), as rows record it."""
        return math.inf if self.max_time_s is None else float(self.max_time_s)
