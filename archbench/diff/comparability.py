"""Which cells of a diff cannot be judged, and why (``archbench diff``; no torch import).

A time ratio is only evidence of a change when both measurements are sound. Before any cell is called
slower or faster, :func:`screen_cell` sets aside:

* cells **measured under load** in either run (the row's ``under_load`` flag: the calibration kernel ran
  over :data:`~archbench.timing.load.LOAD_THRESHOLD` times slower around the cell, or other processes kept
  its cores busy) — verdict ``not comparable``: the machine, not the code, made the times differ;
* cells flagged **noisy** in either run (IQR above 10% of the median), and cells whose **confidence
  interval covers less than the nominal** — verdict ``noisy``: the interval a verdict rests on is not
  the one the rule assumes. Which interval depends on how the cell is compared:

  - on raw samples, the Moses interval of the ratio (below the nominal with very few samples, e.g. 3 and
    3: the full range of the ratios, 90%);
  - without raw samples (a bench CSV), each row's CI of its median (below the nominal when a cell stopped
    with fewer than 6 samples: 93.75% at 5). The ratio interval built from the two CIs' ends is not
    judged by its own stated coverage, the product of the two (91.9% for two 95.9% CIs): that is a floor
    of a deliberately wide interval, whose coverage is in fact far above the nominal (~99% for two 95%
    intervals of normal medians).

A set-aside cell is never ▲ slower / ▼ faster, so it never makes a diff "regressed"; its ratio, CI and
raw p-value are still reported, with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from archbench.results.significance import SYMBOLS, ci_coverage
from archbench.rows import ResultRow
from archbench.timing.load import LOAD_THRESHOLD
from archbench.timing.stats import CONFIDENCE, NOISY_IQR_FRACTION
from archbench.units import coverage_percent

CellVerdict = Literal["slower", "faster", "unchanged", "noisy", "not comparable"]
CELL_VERDICTS: tuple[str, ...] = get_args(CellVerdict)
CELL_SYMBOLS: dict[str, str] = {**SYMBOLS, "not comparable": "≠"}
NOT_COMPARABLE_TEXT = "not comparable (measured under load)"
_TOLERANCE = 1e-9  # coverages are stored rounded; 0.95 is not "below 0.95"


@dataclass(frozen=True)
class Screen:
    """What the measurements allow: ``verdict`` ``None`` (the statistics decide), ``"not comparable"`` or
    ``"noisy"``; ``reason`` says why in words (every reason that applies, ``"; "``-joined)."""

    verdict: Literal["not comparable", "noisy"] | None = None
    reason: str = ""


def screen_cell(base: ResultRow, new: ResultRow, *, raw_samples: bool, ratio_coverage: float,
                confidence: float) -> Screen:
    """Whether the cell measured as ``base`` and ``new`` can be judged (see the module docstring).
    ``raw_samples``: compared on raw samples, with an interval of coverage ``ratio_coverage``."""
    loaded = _per_side(base, new, lambda row: row.under_load, "measured under load", _load_detail)
    noisy = _per_side(base, new, lambda row: row.noisy, "noisy", _noise_detail)
    coverage = _ratio_coverage_reason(ratio_coverage, confidence, base, new) if raw_samples else \
        _per_side(base, new, _row_under_covered, "its median's CI covers less than the nominal", _coverage_detail)
    reasons = [r for r in (loaded, noisy, coverage) if r]
    if loaded:
        return Screen("not comparable", "; ".join(reasons))
    return Screen("noisy", "; ".join(reasons)) if reasons else Screen()


def _per_side(base: ResultRow, new: ResultRow, flagged, what: str, detail) -> str:
    """``measured under load in the base (…)``, ``… in the new run (…)`` or ``… in both runs (…; …)``."""
    sides = [(side, row) for side, row in (("the base", base), ("the new run", new)) if flagged(row)]
    if not sides:
        return ""
    where = "both runs" if len(sides) == 2 else sides[0][0]
    details = "; ".join(f"{side[4:]}: {detail(row)}" if len(sides) == 2 else detail(row) for side, row in sides)
    return f"{what} in {where} ({details})"


def _load_detail(row: ResultRow) -> str:
    if row.load_ratio > LOAD_THRESHOLD:
        return f"the calibration kernel ran {row.load_ratio:.1f}× slower around it"
    return "other processes kept the cores it needed busy"


def _noise_detail(row: ResultRow) -> str:
    spread = row.iqr_ms / row.median_ms if row.median_ms > 0 else math.nan
    return f"IQR {spread:.0%} of the median" if math.isfinite(spread) else f"IQR above {NOISY_IQR_FRACTION:.0%} of the median"


def _row_under_covered(row: ResultRow) -> bool:
    return ci_coverage(row) < CONFIDENCE - _TOLERANCE  # NaN (unknown) is not flagged


def _coverage_detail(row: ResultRow) -> str:
    return f"{coverage_percent(ci_coverage(row))}, {row.n_samples} samples"


def _ratio_coverage_reason(coverage: float, confidence: float, base: ResultRow, new: ResultRow) -> str:
    if not coverage < confidence - _TOLERANCE:
        return ""
    return (f"the CI of the ratio covers only {coverage_percent(coverage)} < {confidence * 100:g}% "
            f"(too few samples: {len(base.samples_ms)} and {len(new.samples_ms)})")
