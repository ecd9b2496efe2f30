"""Interleaved, paired measurement: the models that share a grid point (cells equal but for the model)
are timed in alternating rounds, so whatever makes the machine slower for a while (another process, a
throttled clock) slows all of them alike and falls out of their ratio — hyperfine's ``--reference``, a
paired A/B design. Measuring model A's cells fully and then B's turns such drift into a false difference.

* :func:`grid_points` groups planned cells by grid point (compiled cells stay alone).
* :func:`interleave` is the scheduler (no torch; sampler and clock injectable). Each model is built and
  warmed up in turn with the timer's warm-up policy (:func:`archbench.timing.timer.measure`), then takes
  a first burst of samples — its peak-memory window, with no other model running. Then rounds: in each,
  the models run in a random order (a seeded :class:`random.Random`; the orders are kept), each a short
  burst (``burst.samples`` samples, or fewer once they add up to ``burst.seconds``). A round gives each
  model the ratio ``min(its burst) / min(the reference's burst)`` (:func:`round_ratio`). Rounds stop when
  the paired CI of every model against the reference is within the precision target, when the budget —
  ``max_time_s`` times the number of models, warm-ups included — would be overrun by another round (never
  before ``min_samples`` rounds), or when a model reaches ``max_samples``. Rounds under load leave a model's
  paired ratio and do not spend the budget (up to :data:`EXTENDED_BUDGET` times it in all), so a point on a
  busy machine gets as many quiet rounds as on a quiet one; a ratio still short of quiet rounds is not
  comparable (measured under load): NaN, never the loaded figure.
* :func:`measure_point` is the sweep's side: it builds each cell's step, reads its peak memory over its
  first burst, and turns the outcome into rows. A model that fails (out of memory, an error) drops out
  of the rounds with its error row; the others go on.

The paired relative speed is the median of the per-round ratios with the distribution-free CI of a
median — order statistics at binomial ranks (:func:`archbench.results.significance.paired_ratio_ci`), exact
coverage, no assumption on the ratios' distribution; fewer than 6 rounds give the range of the ratios
(coverage below 95%), which never counts as precise. Each row keeps all of its model's samples (the first
burst's and every round's), so its own median and CI mean what they mean for a cell measured alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archbench.diff.comparability import NOT_COMPARABLE_TEXT
from archbench.results.significance import MIN_QUIET_ROUNDS, RatioEstimate, quiet_paired_ratio
from archbench.rows import ResultRow
from archbench.sweep.bursts import DEFAULT_BURST, Burst, Sampler, round_ratio, take_burst
from archbench.timing.load import BURST_STALL_THRESHOLD
from archbench.timing.loadsignal import LOADED_SHARE, LoadProbe, WindowLoad
from archbench.timing.options import MeasureOptions
from archbench.timing.stats import CONFIDENCE, Measurement, ci_within, median
from archbench.timing.timer import measure

if TYPE_CHECKING:
    from archbench.sweep.cell_measure import RunCaches
    from archbench.sweep.cells import Cell

WARMED_UP = "warmed up"  # the phase after a model's first burst: its peak-memory window closes


@dataclass(frozen=True)
class Interleaving:
    """How a sweep interleaves the models of each grid point: paired ratios against ``reference``, turns of
    ``burst``, round orders from ``random.Random`` seeded with ``seed`` and the grid point (the same
    point gets the same orders in every run)."""

    reference: str
    burst: Burst = DEFAULT_BURST
    seed: int = 0

    def rng(self, cells: Sequence[Cell]) -> random.Random:
        return random.Random(f"{self.seed}:{_point(cells[0])}")


def _point(cell: Cell) -> tuple:
    """A cell's grid point: its key without the model."""
    return cell.key()[1:]


def grid_points(cells: Sequence[Cell]) -> list[tuple[Cell, ...]]:
    """``cells`` grouped by grid point, in the order each point first appears; the cells of a point in
    their own order. A compiled cell stays alone: torch.compile keeps its compiled graphs per code object,
    so two compiled models of one class run alternately would recompile at every switch."""
    points: dict[tuple, list] = {}
    for cell in cells:
        points.setdefault(cell.key() if cell.compiled else _point(cell), []).append(cell)
    return [tuple(group) for group in points.values()]


MIN_QUIET_BURSTS = 3  # quiet bursts of a model needed to say how much the loaded ones slowed it


@dataclass(frozen=True, eq=False)
class Interleaved:
    """What the rounds measured, per model name: warm-up and sampled times (ms; the first burst's samples
    first), the per-round time ratios against the reference (non-reference models), how many rounds each
    model took part in, the order of every round, the failures (the exception that took a model out) and
    why the rounds stopped (``precision``, ``max_time``, ``max_samples``, or ``failed`` when no model is
    left)."""

    reference: str | None
    warmups: Mapping[str, tuple[float, ...]]
    samples: Mapping[str, tuple[float, ...]]
    ratios: Mapping[str, tuple[float, ...]]
    rounds: Mapping[str, int]
    orders: tuple[tuple[str, ...], ...]
    failures: Mapping[str, Exception]
    stop_reason: str
    wall_s: float
    precision: float
    loaded: Mapping[str, tuple[bool, ...]] = dataclasses.field(default_factory=dict)  # per ratio: round loaded?
    bursts: Mapping[str, tuple[tuple[float, bool], ...]] = dataclasses.field(default_factory=dict)  # (median, loaded)

    def measurement(self, name: str) -> Measurement:
        """``name``'s samples as the timer's result (its stop reason is the rounds')."""
        return Measurement(self.samples[name], self.warmups[name], self.stop_reason, self.wall_s, self.precision)

    def paired(self, name: str) -> RatioEstimate | None:
        """Median per-round time ratio ``name`` / reference with its CI, over the quiet rounds; NaN (not comparable:
        :func:`~archbench.results.significance.quiet_rounds`) where loaded rounds left too few quiet ones; None for
        the reference or without a round both ran."""
        ratios = self.ratios.get(name)
        return quiet_paired_ratio(ratios, self.loaded.get(name, ())) if ratios else None

    def loaded_rounds(self, name: str) -> int:
        """Rounds of ``name`` in which a burst ran under CPU pressure (the reference, which has no ratios of its
        own: rounds in which its own burst did)."""
        if name not in self.loaded:
            bursts = self.bursts.get(name, ())
            return sum(was_loaded for _, was_loaded in bursts[len(bursts) - self.rounds.get(name, 0):])  # not the first
        return sum(self.loaded[name])

    def slowdown(self, name: str) -> float:
        """How much the load inflated ``name``'s median: the median of all its bursts over the median of its
        quiet bursts (1.0 with no loaded burst; NaN with fewer than :data:`MIN_QUIET_BURSTS` quiet ones to compare
        against — one or two, often the first burst of a model still settling, gave figures below 1)."""
        bursts = self.bursts.get(name, ())
        quiet = [m for m, was_loaded in bursts if not was_loaded]
        if len(quiet) == len(bursts):
            return 1.0
        return median([m for m, _ in bursts]) / median(quiet) if len(quiet) >= MIN_QUIET_BURSTS else float("nan")


# ---------------------------------------------------------------------------------------- scheduler


class _Rounds:
    """The scheduler's state: the models still running, their samplers, samples, ratios and failures."""

    def __init__(self, names: Sequence[str], reference: str | None, on_failure: Callable[[str, Exception], None],
                 probe: LoadProbe | None = None, spare_cores: float = 0.0):
        self.names = list(names)
        self.probe, self.spare_cores = probe, spare_cores
        self.loaded: dict[str, list[bool]] = {name: [] for name in names if name != reference}
        self.bursts: dict[str, list[tuple[float, bool]]] = {name: [] for name in names}
        self.reference = reference
        self.on_failure = on_failure
        self.samplers: dict[str, Sampler] = {}
        self.warmups: dict[str, tuple[float, ...]] = {}
        self.samples: dict[str, list[float]] = {name: [] for name in names}
        self.ratios: dict[str, list[float]] = {name: [] for name in names if name != reference}
        self.rounds = dict.fromkeys(names, 0)
        self.orders: list[tuple[str, ...]] = []
        self.failures: dict[str, Exception] = {}
        self.loaded_s = 0.0  # the probe's seconds spent in rounds under load: not charged to the budget

    @property
    def active(self) -> list[str]:
        return [name for name in self.names if name in self.samplers and name not in self.failures]

    def fail(self, name: str, exc: Exception) -> None:
        self.on_failure(name, exc)
        # its frames would keep the failed step's tensors alive through the other models' rounds
        self.failures[name] = exc.with_traceback(None)

    def play(self, rng: random.Random, burst: Burst) -> None:
        """One round: every active model's burst, in a random order; then the round's ratios."""
        order = self.active
        rng.shuffle(order)
        self.orders.append(tuple(order))
        bursts: dict[str, list[float]] = {}
        loaded = False
        started = self.probe.clock() if self.probe is not None else 0.0
        for name in order:
            try:
                times, burst_loaded = self.timed_burst(self.samplers[name], burst)
            except Exception as exc:  # noqa: BLE001 - the model drops out; its failure becomes its row
                self.fail(name, exc)
                continue
            self.samples[name] += times
            self.rounds[name] += 1
            bursts[name] = times
            self.bursts[name].append((median(times), burst_loaded))
            loaded = loaded or burst_loaded
        if loaded:
            self.loaded_s += self.probe.clock() - started
        if self.reference in bursts:
            for name, times in bursts.items():
                if name != self.reference:
                    self.ratios[name].append(round_ratio(times, bursts[self.reference]))
                    self.loaded[name].append(loaded)

    def timed_burst(self, sample: Sampler, burst: Burst, times: Sequence[float] = ()) -> tuple[list[float], bool]:
        """A burst and whether the machine was under CPU pressure while it ran."""
        if self.probe is None:
            return take_burst(sample, burst, times), False
        start = self.probe.now()
        times = take_burst(sample, burst, times)
        window: WindowLoad = self.probe.since(start)
        return times, window.loaded(self.spare_cores, BURST_STALL_THRESHOLD)

    def paired(self, name: str) -> RatioEstimate:
        return quiet_paired_ratio(self.ratios[name], self.loaded[name])

    def short_of_quiet(self) -> bool:
        """Some model has rounds under load and fewer than :data:`MIN_QUIET_ROUNDS` quiet ones."""
        return self.reference in self.active and any(
            any(self.loaded[name]) and self.loaded[name].count(False) < MIN_QUIET_ROUNDS
            for name in self.active if name != self.reference)

    def precise(self, precision: float) -> bool:
        """Every model's paired CI against the reference is within ``precision`` of its ratio; without the
        reference (or with it alone), every remaining model's own median CI."""
        others = [name for name in self.active if name != self.reference]
        if self.reference in self.active and others:
            return all(_within(self.paired(name), precision) for name in others)
        return all(ci_within(self.samples[name], precision) for name in self.active)

    def round_s(self, burst: Burst) -> float:
        """A round's expected seconds, from each model's recent samples (a burst as :func:`take_burst` takes it)."""
        seconds = [median(self.samples[name][-5:]) / 1e3 for name in self.active if self.samples[name]]
        return sum(s * min(burst.samples, max(1, math.ceil(burst.seconds / s))) for s in seconds if s > 0)

    def result(self, stop_reason: str, wall_s: float, precision: float) -> Interleaved:
        return Interleaved(self.reference, dict(self.warmups), {k: tuple(v) for k, v in self.samples.items()},
                           {k: tuple(v) for k, v in self.ratios.items()}, dict(self.rounds), tuple(self.orders),
                           dict(self.failures), stop_reason, wall_s, precision,
                           {k: tuple(v) for k, v in self.loaded.items()}, {k: tuple(v) for k, v in self.bursts.items()})


def _within(estimate: RatioEstimate, precision: float) -> bool:
    half = max(estimate.ratio - estimate.low, estimate.high - estimate.ratio)
    return estimate.coverage >= CONFIDENCE and half <= precision * estimate.ratio


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No collector pauses inside samples (as the timer does)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def interleave(
    names: Sequence[str],
    build: Callable[[str], Sampler],
    options: MeasureOptions,
    reference: str | None,
    rng: random.Random,
    *,
    burst: Burst = DEFAULT_BURST,
    clock: Callable[[], float] = time.perf_counter,
    on_phase: Callable[[str, str], None] | None = None,
    on_failure: Callable[[str, Exception], None] | None = None,
    probe: LoadProbe | None = None,
    spare_cores: float = 0.0,
) -> Interleaved:
    """Time the models ``names`` in alternating rounds (see the module docstring); ratios against
    ``reference`` (None: no ratios, and each model's own CI decides when to stop).

    ``build(name)`` makes a model's sampler; it is called just before that model's warm-up, after the
    previous model's first burst, so each model's memory window holds no other model's work. ``clock``
    (seconds) is the budget's clock. ``on_phase(name, phase)`` gets the timer's ``warming up`` and
    ``sampling`` (the first burst starts) and then :data:`WARMED_UP` (it ends). The budget counts warm-ups
    and sampling, not the builds (as for a cell timed alone). A model whose build or sampler raises an
    ``Exception`` is out: ``on_failure(name, exc)`` is called at once and the others go on.
    KeyboardInterrupt propagates. ``probe`` reads the load around every burst (None: not read); a round with
    a burst under CPU pressure is left out of the paired ratio when enough quiet rounds remain
    (:func:`archbench.results.significance.quiet_rounds`); ``spare_cores`` are the cores the cells leave free
    (the fallback signal's allowance where the kernel has no PSI)."""
    phase = on_phase or (lambda name, what: None)
    state = _Rounds(names, reference, on_failure or (lambda name, exc: None), probe, spare_cores)
    spent_s = 0.0  # warming up and sampling: building a model (and counting its FLOPs) is not in the budget
    for name in names:
        try:
            sample = build(name)
        except Exception as exc:  # noqa: BLE001 - the model drops out; its failure becomes its row
            state.fail(name, exc)
            continue
        started = clock()
        try:
            _warm_up(state, name, sample, options, burst, clock, phase)
        except Exception as exc:  # noqa: BLE001 - as above
            state.fail(name, exc)
        spent_s += clock() - started

    began = clock() - spent_s
    budget_s = options.budget_s * len(names)
    with _gc_paused():
        while True:
            stop = _stop_reason(state, options, clock() - began, budget_s, burst)
            if stop:
                return state.result(stop, clock() - began, options.precision)
            state.play(rng, burst)


def _warm_up(state: _Rounds, name: str, sample: Sampler, options: MeasureOptions, burst: Burst,
             clock: Callable[[], float], phase: Callable[[str, str], None]) -> None:
    """The timer's warm-up of one model, then its first burst (its memory window: no other model runs)."""
    first = measure(sample, "cpu", dataclasses.replace(options, min_samples=1, max_samples=1),
                    on_phase=lambda what: phase(name, what), sampler=sample, clock=clock)
    with _gc_paused():
        state.samples[name], loaded = state.timed_burst(sample, burst, first.samples_ms)
    state.bursts[name].append((median(state.samples[name]), loaded))
    state.samplers[name], state.warmups[name] = sample, first.warmup_ms
    phase(name, WARMED_UP)


EXTENDED_BUDGET = 3.0  # rounds under load stretch a point's budget up to this many times itself


def _stop_reason(state: _Rounds, options: MeasureOptions, elapsed_s: float, budget_s: float, burst: Burst) -> str:
    """Why the rounds stop now, or ``""`` to play another: the timer's rule (:meth:`MeasureOptions.stop_reason`)
    over rounds — ``min_samples`` counts rounds, ``max_samples`` a model's samples, the budget is every
    model's — or ``failed`` when no model is left. Rounds under load (their ratios left out) do not spend
    the budget, nor does anything while loaded rounds leave a model short of quiet ones, up to
    :data:`EXTENDED_BUDGET` times the budget in all: under a load that comes and goes, the quiet rounds get
    the time they would have had on a quiet machine (and so its precision); under one that never lifts, the
    stretched budget is spent and the ratio is not comparable."""
    if not state.active:
        return "failed"
    next_s = state.round_s(burst)
    spent_s = 0.0 if state.short_of_quiet() else elapsed_s - state.loaded_s
    if elapsed_s + next_s > EXTENDED_BUDGET * budget_s:  # the stretch is spent: the whole time counts
        spent_s, budget_s = elapsed_s, EXTENDED_BUDGET * budget_s
    return options.stop_reason(samples=max(len(state.samples[name]) for name in state.active), rounds=len(state.orders),
                               precise=state.precise, spent_s=lambda: spent_s, next_s=next_s, budget_s=budget_s)


# ---------------------------------------------------------------------------------- a grid point


def measure_point(cells: Sequence[Cell], options: MeasureOptions, interleaving: Interleaving, *,
                  caches: RunCaches, on_phase: Callable[[Cell, str], None]) -> list[ResultRow]:
    """The rows of one grid point's cells (one per model, in ``cells``' order; not compiled: see
    :func:`grid_points`), timed interleaved.

    Each model's peak memory is read over its first burst, right after its warm-up and before the next
    model is built: the same window as a cell measured alone (weights and inputs counted, warm-up
    workspaces not), with no other model's activations in it. A cell whose dtype the device cannot run
    is an ``unsupported`` row and takes no part; a model that fails is an ``oom``/``error`` row."""
    import torch

    from archbench.sweep.cell_measure import PreparedCell, cell_identity
    from archbench.timing.backends import unsupported_backend
    from archbench.timing.devices import unsupported_dtype
    from archbench.timing.memory import MemoryTracker
    from archbench.timing.timer import make_sampler

    torch.set_num_threads(cells[0].threads)
    by_name = {cell.model: cell for cell in cells}
    identities = {cell.model: cell_identity(cell, options) for cell in cells}
    rows: dict[str, ResultRow] = {}
    for cell in cells:
        unsupported = unsupported_dtype(cell.device, cell.dtype) or unsupported_backend(cell.backend, cell.mode,
                                                                                        cell.dtype, cell.device)
        if unsupported:
            rows[cell.model] = ResultRow(**identities[cell.model], status="unsupported", error=unsupported)
    names = [cell.model for cell in cells if cell.model not in rows]
    prepared = {name: PreparedCell(by_name[name]) for name in names}
    trackers: dict[str, Any] = {}
    peaks: dict[str, float] = {}

    def build(name: str) -> Sampler:
        cell = by_name[name]
        trackers[name] = MemoryTracker(cell.device)
        return make_sampler(prepared[name].build(caches, lambda what: on_phase(cell, what)), cell.device)

    def phase(name: str, what: str) -> None:
        if what == "sampling":
            trackers[name].start()
        if what == WARMED_UP:
            peaks[name] = trackers[name].peak_bytes()
            what = "waiting for the other models" if name != names[-1] else "interleaved rounds"
        on_phase(by_name[name], what)

    def failed(name: str, exc: Exception) -> None:
        rows[name] = prepared.pop(name).failure_row(identities[name], exc)

    reference = interleaving.reference if interleaving.reference in names else None
    spare = max((os.cpu_count() or 1) - cells[0].threads, 0)
    result = interleave(names, build, options, reference, interleaving.rng(cells), burst=interleaving.burst,
                        on_phase=phase, on_failure=failed, probe=LoadProbe(), spare_cores=spare)
    for name, cell_prepared in prepared.items():
        row = cell_prepared.ok_row(identities[name], result.measurement(name), peaks[name], caches)
        rows[name] = dataclasses.replace(row, rounds=result.rounds[name], **_paired_fields(result.paired(name)),
                                         **_load_fields(result, name))
    return [rows[cell.model] for cell in cells]


def _load_fields(result: Interleaved, name: str) -> dict[str, object]:
    """The row's load fields from its bursts: ``under_load`` when over :data:`LOADED_SHARE` of them ran
    under CPU pressure (or its paired ratio is not comparable), ``load_ratio`` the estimated slowdown of its
    median (see :meth:`Interleaved.slowdown`), ``loaded_rounds`` the rounds left out of its paired ratio."""
    bursts = result.bursts.get(name, ())
    share = sum(loaded for _, loaded in bursts) / len(bursts) if bursts else 0.0
    paired = result.paired(name)
    not_comparable = paired is not None and paired.ratio != paired.ratio
    return {"under_load": share > LOADED_SHARE or not_comparable, "load_ratio": round(result.slowdown(name), 3),
            "loaded_rounds": result.loaded_rounds(name)}


def _paired_fields(estimate: RatioEstimate | None) -> dict[str, object]:
    """The row's paired ratio and CI; NaN with ``paired_reason`` :data:`NOT_COMPARABLE_TEXT` where too few
    rounds were quiet."""
    from archbench.units import round_sig as _sig  # the rows' stored figures

    if estimate is None:
        return {}
    reason = {"paired_reason": NOT_COMPARABLE_TEXT} if estimate.ratio != estimate.ratio else {}
    return {"paired_ratio": _sig(estimate.ratio), "paired_ratio_low": _sig(estimate.low),
            "paired_ratio_high": _sig(estimate.high), **reason}

