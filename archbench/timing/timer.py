"""The adaptive timer: a time-aware warm-up, then one sample per iteration (CUDA events on GPU,
``perf_counter_ns`` on CPU) until the 95% CI of the median is within the precision target, the time
budget runs out, or the sample cap is reached — after ``torch/utils/benchmark/utils/timer.py``'s
``adaptive_autorange``, but keeping every raw sample (:class:`~archbench.timing.stats.Measurement`).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from archbench.timing.loadsignal import LoadWindows
from archbench.timing.options import MeasureOptions
from archbench.timing.stats import Measurement, ci_within, median


def _is_steady(times: list[float], window: int, tolerance: float) -> bool:
    if len(times) < window:
        return False
    last = times[-window:]
    return (max(last) - min(last)) <= tolerance * min(last)


def _cpu_sampler(step: Callable[[], object]) -> Callable[[], float]:
    def one() -> float:
        start = time.perf_counter_ns()
        step()
        return (time.perf_counter_ns() - start) / 1e6

    return one


def _cuda_sampler(step: Callable[[], object], device: str) -> Callable[[], float]:
    """Device time between two events around the step; the host waits on the end event, so each
    sample is complete before the next one starts."""
    import torch

    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    stream = torch.cuda.current_stream(device)

    def one() -> float:
        start.record(stream)
        step()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end)

    return one


def make_sampler(step: Callable[[], object], device: str) -> Callable[[], float]:
    """A callable running ``step`` once and returning its time in milliseconds."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
        return _cuda_sampler(step, device)
    return _cpu_sampler(step)


def measure(
    step: Callable[[], object],
    device: str = "cpu",
    options: MeasureOptions = MeasureOptions(),
    *,
    on_phase: Callable[[str], None] | None = None,
    sampler: Callable[[], float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    load: LoadWindows | None = None,
) -> Measurement:
    """Warm ``step`` up, then sample it until the median is known to ``options.precision`` (95% CI), the
    cell's ``max_time_s`` (warm-up included) is spent, or ``max_samples`` is reached.

    ``sampler`` (runs one iteration, returns its milliseconds) replaces the device's timer and ``clock``
    (seconds) the wall clock: tests script both, so the stopping rules, the warm-up policy and the budget
    are checked deterministically, without sleeping.

    At least ``min_samples`` samples and one warm-up iteration are always taken, even past
    ``max_time_s``; beyond those, no iteration is started that the budget could not finish (estimated
    from the median so far): :meth:`MeasureOptions.stop_reason`, the one stopping rule.

    ``load`` (None: not read) reads the load over windows of the sampling, between samples
    (:class:`~archbench.timing.loadsignal.LoadWindows`: two file reads a tenth of a second)."""
    max_time_s, warmup = options.max_time_s, options.warmup
    sample = sampler if sampler is not None else make_sampler(step, device)
    began = clock()
    elapsed = lambda: clock() - began  # noqa: E731

    if on_phase:
        on_phase("warming up")
    warm: list[float] = []
    budget = warmup.budget_s(max_time_s)
    min_time = min(warmup.min_time_s, budget)
    while True:
        warm.append(sample())
        if len(warm) < warmup.min_iters:
            continue
        spent = elapsed()
        if _is_steady(warm, warmup.steady_window, warmup.steady_tolerance) and spent >= min_time:
            break
        if spent + warm[-1] / 1e3 > budget or len(warm) >= warmup.max_iters:
            break

    if on_phase:
        on_phase("sampling")
    samples: list[float] = []
    next_check = 6

    def precise(target: float) -> bool:
        """The CI against the target, checked as the samples grow by 5% (each check sorts them all)."""
        nonlocal next_check
        n = len(samples)
        if n < next_check:
            return False
        next_check = max(n + 1, int(n * 1.05))
        return ci_within(samples, target)

    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit / torch.utils.benchmark do: no collector pauses inside samples
    if load is not None:
        load.start()
    try:
        while True:
            samples.append(sample())
            if load is not None:
                load.sampled()
            stop_reason = options.stop_reason(samples=len(samples), precise=precise, spent_s=elapsed,
                                              next_s=median(samples[-5:]) / 1e3)
            if stop_reason:
                break
    finally:
        if load is not None:
            load.finish()
        if gc_was_enabled:
            gc.enable()
    return Measurement(tuple(samples), tuple(warm), stop_reason, elapsed(), options.precision)
