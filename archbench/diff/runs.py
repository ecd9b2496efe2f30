"""``archbench diff``: is run NEW slower than run BASE, cell by cell? (No torch import.)

Cells are matched by :meth:`ResultRow.key`. For each cell measured successfully in both runs:

* ``ratio`` — how many times longer NEW takes (``> 1``: slower). With raw samples on both sides: the
  Hodges–Lehmann estimate with Moses' CI (:func:`~archbench.results.significance.ratio_ci`) and the
  Mann–Whitney U p-value, Holm-adjusted across every tested cell. From rows without raw samples (a CSV
  of ``bench``): ``new median / base median`` and the interval from the CI ends ``[new_low / base_high,
  new_high / base_low]`` (it covers the true ratio at least as often as both median CIs hold; no test).
* ``verdict`` — asv's rule (:func:`~archbench.results.significance.verdict`): slower / faster only when
  significant and the whole CI lies beyond ``±min_effect``; unchanged when it lies within; else noisy.
  Cells whose measurements cannot support a verdict are set aside first
  (:func:`~archbench.diff.comparability.screen_cell`, with a ``reason``): measured under load in either
  run -> ``not comparable``; flagged noisy, or a CI covering less than the nominal -> ``noisy``. They
  are left out of the Holm family (no decision rests on their test) and are never a regression.

Counts (FLOPs per step, parameters, MACs) are compared exactly. Cells that failed in either run, and
cells measured in only one, are listed. Environment differences (torch, devices, threads, CUDA, driver
...) are listed first and make the runs "not comparable" unless allowed: then no cell is a regression.
A regression is a cell called slower, or one that ran in BASE and fails in NEW. When every cell both
runs measured was set aside as not comparable (and none regressed), the outcome is "not comparable" too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from archbench.diff.comparability import CELL_VERDICTS, CellVerdict, Screen, screen_cell
from archbench.env.differences import EnvDifference, env_differences, merge_sessions
from archbench.errors import PATH_ECHO_LIMIT, UsageError, quoted
from archbench.files import jsonable
from archbench.results.significance import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_EFFECT,
    RatioEstimate,
    holm,
    mann_whitney_u,
    ratio_ci,
    ratio_of_rows,
    verdict,
)
from archbench.rows import CellKey, ResultRow
from archbench.timing.stats import CONFIDENCE, median

Outcome = Literal["regressed", "no regression", "not comparable"]
Method = Literal["mann-whitney", "row CIs"]

@dataclass(frozen=True)
class RunData:
    """One side of a diff: a label for the user, the rows (raw samples where stored), the environment
    fingerprint, and per-(model, input) counts (``params``, ``macs_per_sample``) where known."""

    label: str
    rows: Sequence[ResultRow]
    env: Mapping[str, Any] = field(default_factory=dict)
    counts: Mapping[tuple[str, str], Mapping[str, float]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CellDiff:
    """One cell measured in both runs. ``estimate``: NEW time / BASE time with its CI (``ratio``, ``low``,
    ``high``, ``coverage``); ``p``/``p_holm``: Mann–Whitney p-value, raw and Holm-adjusted (NaN: no test, or a
    cell set aside); ``reason``: why the cell was set aside (empty when the statistics decided)."""

    key: CellKey
    base_median_ms: float
    new_median_ms: float
    estimate: RatioEstimate
    p: float
    p_holm: float
    verdict: CellVerdict
    method: Method
    n_base: int
    n_new: int
    reason: str = ""

    ratio = property(lambda self: self.estimate.ratio)
    low = property(lambda self: self.estimate.low)
    high = property(lambda self: self.estimate.high)
    coverage = property(lambda self: self.estimate.coverage)

    def to_json(self) -> dict[str, Any]:
        """The key's fields, the medians, the estimate's figures, then the rest (NaN as in Python)."""
        rest = {k: v for k, v in vars(self).items() if k not in ("key", "base_median_ms", "new_median_ms", "estimate")}
        return {**self.key._asdict(), "base_median_ms": self.base_median_ms, "new_median_ms": self.new_median_ms,
                **self.estimate._asdict(), **rest}


@dataclass(frozen=True)
class FailedCell:
    """A cell that did not run (status other than ``ok``) in at least one of the runs."""

    key: CellKey
    base_status: str
    new_status: str
    error: str  # NEW's error, else BASE's

    @property
    def newly_failed(self) -> bool:
        return self.base_status == "ok" and self.new_status != "ok"


@dataclass(frozen=True)
class CountChange:
    """An exact count that differs: ``what`` names the cell or the model and input."""

    what: str
    name: str
    base: float
    new: float


@dataclass(frozen=True)
class DiffResult:
    """The comparison of two runs: the environment differences, the cells both ran (``cells``), the
    cells that failed in either (``failed``), those only one measured, exact count changes, and notes
    (warnings of the files read, cells compared without raw samples, a run without an environment)."""

    base_label: str
    new_label: str
    env_differences: tuple[EnvDifference, ...]
    allow_env_change: bool
    cells: tuple[CellDiff, ...]
    failed: tuple[FailedCell, ...]
    only_in_base: tuple[CellKey, ...]
    only_in_new: tuple[CellKey, ...]
    count_changes: tuple[CountChange, ...]
    notes: tuple[str, ...]
    min_effect: float
    alpha: float
    confidence: float

    @property
    def comparable(self) -> bool:
        return self.allow_env_change or not self.env_differences

    @property
    def slower(self) -> tuple[CellDiff, ...]:
        return tuple(c for c in self.cells if c.verdict == "slower")

    @property
    def newly_failed(self) -> tuple[FailedCell, ...]:
        return tuple(f for f in self.failed if f.newly_failed)

    @property
    def not_comparable(self) -> tuple[CellDiff, ...]:
        """Cells measured under load in either run: their times say nothing about the code."""
        return tuple(c for c in self.cells if c.verdict == "not comparable")

    @property
    def fully_compared(self) -> bool:
        """Nothing was left unjudged for the environment's sake: the environments match (or a difference
        was allowed) and no cell was measured under load."""
        return self.comparable and not self.not_comparable

    @property
    def outcome(self) -> Outcome:
        if not self.comparable:
            return "not comparable"
        if self.slower or self.newly_failed:
            return "regressed"
        return "not comparable" if self.cells and len(self.not_comparable) == len(self.cells) else "no regression"

    def verdict_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CELL_VERDICTS, 0)
        for cell in self.cells:
            counts[cell.verdict] += 1
        return counts


# ------------------------------------------------------------------------------------------ diff


def diff_runs(base: RunData, new: RunData, *, min_effect: float = DEFAULT_MIN_EFFECT, alpha: float = DEFAULT_ALPHA,
              confidence: float = CONFIDENCE, allow_env_change: bool = False) -> DiffResult:
    """Compare ``new`` against ``base`` cell by cell (see the module docstring). Raises
    :class:`UsageError` when the runs have no cell in common."""
    base_rows, new_rows = _by_key(base.rows), _by_key(new.rows)
    common = [key for key in base_rows if key in new_rows]
    if not common:
        raise UsageError(f"{quoted(base.label, PATH_ECHO_LIMIT)} and {quoted(new.label, PATH_ECHO_LIMIT)} have no cell in common "
                         "(a cell is a model at one device, mode, batch, input, dtype and options): compare runs of the same "
                         "models and grid.")
    pairs = [(base_rows[k], new_rows[k]) for k in common if _both_ok(base_rows[k], new_rows[k])]
    tested = [(b, n) for b, n in pairs if _testable(b.samples_ms) and _testable(n.samples_ms)]
    pvalues = {b.key(): mann_whitney_u(n.samples_ms, b.samples_ms)[1] for b, n in tested}
    estimates = {b.key(): _estimate(b, n, b.key() in pvalues, confidence) for b, n in pairs}
    screens = {b.key(): screen_cell(b, n, raw_samples=b.key() in pvalues, ratio_coverage=estimates[b.key()].coverage,
                                    confidence=confidence) for b, n in pairs}
    family = [key for key in pvalues if screens[key].verdict is None]  # Holm over the cells a test decides
    adjusted = dict(zip(family, holm([pvalues[key] for key in family])))
    cells = tuple(_cell_diff(b, n, estimates[b.key()], pvalues.get(b.key()), adjusted.get(b.key()), screens[b.key()],
                             min_effect, alpha) for b, n in pairs)
    return DiffResult(
        base_label=base.label,
        new_label=new.label,
        env_differences=env_differences(base.env, new.env),
        allow_env_change=allow_env_change,
        cells=cells,
        failed=tuple(_failed(base_rows[k], new_rows[k]) for k in common if not _both_ok(base_rows[k], new_rows[k])),
        only_in_base=tuple(k for k in base_rows if k not in new_rows),
        only_in_new=tuple(k for k in new_rows if k not in base_rows),
        count_changes=(*_flops_changes(base_rows, new_rows, common), *_model_count_changes(base.counts, new.counts)),
        notes=_notes(base, new, len(tested), len(pairs)),
        min_effect=min_effect,
        alpha=alpha,
        confidence=confidence,
    )


def _by_key(rows: Iterable[ResultRow]) -> dict[CellKey, ResultRow]:
    return {row.key(): row for row in rows}


def _testable(samples: Sequence[float]) -> bool:
    """Raw samples the test and the ratio CI can use: some, every one a positive time."""
    return bool(samples) and all(math.isfinite(t) and t > 0 for t in samples)


def _both_ok(base: ResultRow, new: ResultRow) -> bool:
    return base.status == new.status == "ok"


def _estimate(base: ResultRow, new: ResultRow, raw_samples: bool, confidence: float) -> RatioEstimate:
    return ratio_ci(base.samples_ms, new.samples_ms, confidence) if raw_samples else ratio_of_rows(new, base)


def _cell_diff(base: ResultRow, new: ResultRow, estimate: RatioEstimate, p: float | None, p_holm: float | None,
               screen: Screen, min_effect: float, alpha: float) -> CellDiff:
    if p is None:
        method, base_median, new_median = "row CIs", base.median_ms, new.median_ms
    else:
        method, base_median, new_median = "mann-whitney", median(base.samples_ms), median(new.samples_ms)
    return CellDiff(
        key=base.key(),
        base_median_ms=base_median,
        new_median_ms=new_median,
        estimate=estimate,
        p=math.nan if p is None else p,
        p_holm=math.nan if p_holm is None else p_holm,
        verdict=screen.verdict or verdict(estimate.low, estimate.high, p_holm, alpha=alpha, min_effect=min_effect),
        method=method,
        n_base=len(base.samples_ms) or base.n_samples,
        n_new=len(new.samples_ms) or new.n_samples,
        reason=screen.reason,
    )


def _failed(base: ResultRow, new: ResultRow) -> FailedCell:
    return FailedCell(base.key(), base.status, new.status, new.error or base.error)


def _flops_changes(base_rows: Mapping[CellKey, ResultRow], new_rows: Mapping[CellKey, ResultRow],
                   common: list[CellKey]) -> list[CountChange]:
    changes = []
    for key in common:
        before, after = base_rows[key].flops_per_step, new_rows[key].flops_per_step
        if math.isfinite(before) and math.isfinite(after) and before != after:
            changes.append(CountChange(key.label(), "flops_per_step", before, after))
    return changes


def _model_count_changes(base: Mapping[tuple[str, str], Mapping[str, float]],
                         new: Mapping[tuple[str, str], Mapping[str, float]]) -> list[CountChange]:
    changes = []
    for (model, input), counts in base.items():
        for name, before in counts.items():
            after = new.get((model, input), {}).get(name)
            if after is not None and before is not None and before != after:
                changes.append(CountChange(f"{model} {input}", name, before, after))
    return changes


def _notes(base: RunData, new: RunData, tested: int, compared: int) -> tuple[str, ...]:
    notes = [*base.warnings, *new.warnings]
    if tested < compared:
        notes.append(f"{compared - tested} of {compared} cells have no usable raw samples in one of the runs (a bench "
                     "CSV keeps medians and CIs only): they are compared by their median CIs, without a test.")
    for run in (base, new):
        if not run.env:
            notes.append(f"{run.label} has no recorded environment: differences in torch, device or threads "
                         "cannot be detected.")
    return tuple(notes)


# ----------------------------------------------------------------------------------------- loading


def load_run_data(ref: str, db_path: str | Path | None = None) -> RunData:
    """A run to diff from ``ref``, any source :func:`~archbench.results.sources.load_source` reads: a report
    folder (``archbench compare``'s: its results.json holds the raw samples), a results CSV (``bench``'s, or
    ``compare``'s with its results.json), a results.json, or a run of the results store at ``db_path``
    (``latest``, ``latest~N`` or a run id)."""
    from archbench.results.sources import load_source

    source = load_source(ref, db_path)
    data = source.data
    counts = {(s.model, s.input): {"params": s.params_total, "macs_per_sample": s.macs / s.batch} for s in data.stats}
    env = merge_sessions(data.environments) if data.environments else {}
    return RunData(source.name, data.rows, env, counts, source.warnings)


# ------------------------------------------------------------------------------------------- JSON


def diff_to_json(result: DiffResult) -> dict[str, Any]:
    """The diff as JSON-able data (NaN as ``null``; cells with their key fields spelled out)."""
    return jsonable({
        "base": result.base_label,
        "new": result.new_label,
        "outcome": result.outcome,
        "comparable": result.comparable,
        "fully_compared": result.fully_compared,
        "min_effect": result.min_effect,
        "alpha": result.alpha,
        "confidence": result.confidence,
        "environment_differences": [vars(d) for d in result.env_differences],
        "verdicts": result.verdict_counts(),
        "cells": [c.to_json() for c in result.cells],
        "failed": [{**f.key._asdict(), "base_status": f.base_status, "new_status": f.new_status, "error": f.error,
                    "newly_failed": f.newly_failed} for f in result.failed],
        "only_in_base": [k._asdict() for k in result.only_in_base],
        "only_in_new": [k._asdict() for k in result.only_in_new],
        "count_changes": [vars(c) for c in result.count_changes],
        "notes": list(result.notes),
    })

