"""How a cell is measured: one frozen :class:`MeasureOptions` with ONE set of defaults, used by ``bench``,
``compare``, study files and the Python API alike (no torch import)."""

from __future__ import annotations

import math
from collections.abc import Callable
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

    EXPECTED = {  # what each field may be (the CLI and study files say it of their own option)
        "precision": "a fraction between 0 and 1 (0.02 means ±2%)",
        "max_time_s": "a positive number of seconds, or None",
        "min_samples": "a positive integer",
        "max_samples": "a positive integer, at least min_samples",
    }

    def __post_init__(self) -> None:
        """The one check of the measurement options, whoever gives them (the API, the CLI, a study file): an
        :class:`~archbench.arguments.ArgumentError` naming the field (also a ``ValueError``)."""
        from archbench import arguments as check  # types first: a string here would fail inside a comparison

        expected = self.EXPECTED
        check.number(self.precision, "precision", expected["precision"])
        if self.max_time_s is not None:
            check.number(self.max_time_s, "max_time_s", expected["max_time_s"])
        check.integer(self.min_samples, "min_samples", what=expected["min_samples"])
        check.integer(self.max_samples, "max_samples", what=expected["max_samples"])
        check.instance(self.warmup, "warmup", WarmupPolicy, "a WarmupPolicy")
        if not 0 < self.precision < 1:
            raise check.out_of_range("precision", expected["precision"], self.precision)
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise check.out_of_range("max_time_s", expected["max_time_s"], self.max_time_s)
        if self.max_samples < self.min_samples:
            raise check.out_of_range("max_samples", f"at least min_samples ({self.min_samples})", self.max_samples)

    @property
    def budget_s(self) -> float:
        """``max_time_s`` as a number (``inf`` without a budget), as rows record it."""
        return math.inf if self.max_time_s is None else float(self.max_time_s)

    def stop_reason(self, *, samples: int, precise: Callable[[float], bool], spent_s: Callable[[], float],
                    next_s: float, rounds: int | None = None, budget_s: float | None = None) -> str:
        """THE stopping rule, for a cell timed alone (:func:`archbench.timing.timer.measure`) and for models
        timed in rounds (:func:`archbench.sweep.interleave.interleave`): why sampling stops now —
        ``precision``, ``max_time`` or ``max_samples`` — or ``""`` to take another sample (or round).

        ``samples``: taken so far (in rounds, the most any model has); ``rounds``: what ``min_samples``
        counts (default: the samples); before ``min_samples`` only ``max_samples`` stops. Then the precision
        target (``precise(precision)``: the CI is within it), then the budget — ``budget_s`` (default
        ``max_time_s``; ``None``: none) would be overrun by ``spent_s()`` plus the next ``next_s`` — then
        ``max_samples``."""
        if (samples if rounds is None else rounds) < self.min_samples:
            return "max_samples" if samples >= self.max_samples else ""
        if precise(self.precision):
            return "precision"
        budget = self.max_time_s if budget_s is None else budget_s
        if budget is not None and spent_s() + next_s > budget:
            return "max_time"
        return "max_samples" if samples >= self.max_samples else ""
