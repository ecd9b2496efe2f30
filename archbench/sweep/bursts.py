"""One model's turn in an interleaved round (:mod:`archbench.sweep.interleave`): how long a burst lasts, how
it is taken, and how two bursts of one round give a time ratio. No torch; the sampler is any callable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

Sampler = Callable[[], float]  # runs one iteration, returns its milliseconds


@dataclass(frozen=True)
class Burst:
    """One model's turn in a round: ``samples`` samples, or fewer once they add up to ``seconds`` (at
    least one) — a 2 ms step takes 5 samples a turn, a 100 ms step three, a 300 ms step one. Five samples
    where the time allows: a round's ratio takes each burst's fastest (:func:`round_ratio`), and the fastest
    of five sheds more of a shared VM's jitter than the fastest of two (``benchmarks/busy_machine.py``).

    Why not shorter: bursts of 0.05 s (one 60 ms sample of ResNeXt-50 / WRN-16-8, 6 s each, quiet, 8 runs)
    halved the ratio's scatter from run to run (1.5% against 3.2%), but neighbouring rounds then share the
    machine's state, and the order-statistic CI, which takes rounds as independent, covered the runs' common
    median in 6 of 8 runs (7-8 of 8 with these bursts). Shorter bursts want a CI over blocks of rounds first."""

    samples: int = 5
    seconds: float = 0.25


DEFAULT_BURST = Burst()


def take_burst(sample: Sampler, burst: Burst, times: Sequence[float] = ()) -> list[float]:
    """``times`` continued with samples until there are ``burst.samples`` or they add up to ``burst.seconds``."""
    times = list(times)
    while len(times) < burst.samples and sum(times) < burst.seconds * 1e3:
        times.append(sample())
    return times


def round_ratio(times: Sequence[float], reference_times: Sequence[float]) -> float:
    """A round's time ratio: the fastest sample of a model's burst over the fastest of the reference's, each
    among their first ``k`` samples, ``k`` the shorter burst's length (the fastest of more samples is faster:
    a model whose bursts hold fewer samples would look slower).

    Why the fastest and not the median: what slows a sample on a shared machine (a neighbour's time slice,
    the hypervisor, a cache another tenant flushed) only ever adds time, so the fastest of a burst is the
    one least touched by it. On this project's 2-core VM, with PSI reading zero throughout, bursts' medians
    still spread by 10-35% (interquartile) and rounds' median ratios by ±10%; over equal sampling time the
    ratio of bursts' minima (five samples) scattered 25% less from window to window than the ratio of
    their medians (``benchmarks/busy_machine.py``, and the issue 24 note)."""
    k = min(len(times), len(reference_times))
    return min(times[:k]) / min(reference_times[:k])

