"""Relative speed on a busy machine: does the comparison hold, and does the load check tell the truth?
(A benchmark, not a test: it prints figures. Run it alone: anything else running is more load.)

The experiment of issue 24, built in. Two models (default: resnext-50 as the reference, wrn-16-8;
3x32x32, batch 1, infer, CPU, 1 thread, precision 1%, --max-time s per model) are compared under each
square-wave load of --waves (``ON/OFF`` seconds, default ``2/2`` and ``10/10``): --loaders busy processes
(default 2: one per core of this machine) that this script starts, stops (SIGSTOP) and resumes (SIGCONT)
on the schedule, and kills when the method's run ends: each method of each repetition gets a wave of its
own, starting ON (each loader also exits by itself after --max-load s, so nothing outlives the script).
Under each wave, --repetitions repetitions of each method:

* **unpaired** (``--no-interleave``): each model's cell in turn; ratio of the two medians;
* **interleaved, paired**: the default — alternating rounds; the paired ratio (its quiet rounds). Rounds
  under load do not spend the point's budget (up to three times it in all); a point still short of six
  quiet rounds is "not comparable (measured under load)" (NaN): counted apart — neither an error nor a
  ratio — and printed;
* **interleaved rows' own unpaired**: the ratio of the same rows' medians.

**The quiet reference is measured around every repetition**: an interleaved run on the quiet machine
(--quiet-factor times the budget) before the first repetition and after each one, and a repetition's
reference is the mean of the two quiet runs around it. Why: on a shared VM the quiet ratio itself moves
(with what the host's other tenants do, which no counter inside the VM shows) — 1.044 to 1.113 within six
minutes of one session — so a single reference taken minutes earlier mixes that drift into every error.
The quiet runs' own scatter (each against the median of all of them) is printed first: the floor that no
method under load can beat at that budget. Errors are also printed against the median of all quiet runs.

Printed per wave and method: every ratio, its error against its quiet reference, the median and worst
error, how often the CI covers the quiet reference (of the ratios given), and how many were not comparable.
Then the load check: cells flagged of those measured under the waves — the loaders ran during a quarter
or more of their **sampling** (what the check reads: a cell's build and warm-up are not timed, and under
the 10 s/10 s wave the second model's sampling can fall wholly in an OFF phase after an ON one covered its
warm-up); then of all the cells run while a wave was on; with each cell not flagged, the share of its
sampling the loaders ran and its real slowdown — and on the quiet machine (of the quiet cells), and for each flagged
interleaved cell the printed slowdown (``load_ratio``: the estimated inflation of its median) beside its
real slowdown (its median under the wave / its quiet median).

Usage: python benchmarks/busy_machine.py [--models resnext-50,wrn-16-8] [--repetitions 5] [--waves 2/2,10/10]
       [--max-time 6] [--precision 0.01] [--threads 1] [--loaders 2] [--quiet-factor 2]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from archbench.catalog.registry import get_spec
from archbench.sweep.cells import plan_cells
from archbench.sweep.interleave import Interleaving
from archbench.sweep.run import RunCaches, run_sweep
from archbench.timing.options import MeasureOptions

OVERLAP = 0.25  # a cell the loaders ran during this share of its sampling or more counts as measured under load
BUSY_LOOP = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass\n"


class SquareWave:
    """``loaders`` busy processes, running ``on_s`` seconds then stopped ``off_s`` seconds, in turn, from a
    background thread, until :meth:`stop` (or ``max_s``, after which each loader exits by itself)."""

    def __init__(self, on_s: float, off_s: float, loaders: int, max_s: float):
        self.on_s, self.off_s = on_s, off_s
        self.procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(max_s)]) for _ in range(loaders)]
        self._stop = threading.Event()
        self.on_spans: list[list[float]] = []  # [start, end] of each ON phase (monotonic seconds)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _signal(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, sig)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._signal(signal.SIGCONT)
            self.on_spans.append([time.monotonic(), math.inf])
            stopped = self._stop.wait(self.on_s)
            self.on_spans[-1][1] = time.monotonic()
            if stopped:
                break
            self._signal(signal.SIGSTOP)
            self._stop.wait(self.off_s)

    def on_share(self, start: float, end: float) -> float:
        """The share of ``[start, end]`` during which the loaders ran."""
        on = sum(max(0.0, min(end, e) - max(start, s)) for s, e in self.on_spans)
        return on / (end - start) if end > start else 0.0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._signal(signal.SIGCONT)
        for proc in self.procs:
            proc.kill()
            proc.wait()


@dataclass
class Method:
    ratios: list[float] = field(default_factory=list)
    covered: list[bool] = field(default_factory=list)
    not_comparable: int = 0  # "not comparable (measured under load)": no ratio given, so neither right nor wrong


def time_ratio_unpaired(reference, other) -> tuple[float, float, float]:
    """other / reference from the two medians, interval from the CI ends."""
    return (other.median_ms / reference.median_ms, other.ci_low_ms / reference.ci_high_ms,
            other.ci_high_ms / reference.ci_low_ms)


def time_ratio_paired(other) -> tuple[float, float, float]:
    return other.paired_ratio, other.paired_ratio_low, other.paired_ratio_high


def error(ratio: float, quiet: float) -> float:
    return abs(ratio / quiet - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnext-50,wrn-16-8", help="reference first")
    parser.add_argument("--input", default="3x32x32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--waves", default="2/2,10/10", help="ON/OFF seconds of each square wave")
    parser.add_argument("--loaders", type=int, default=os.cpu_count() or 2, help="busy processes of the load")
    parser.add_argument("--max-time", type=float, default=6.0, help="seconds per model (warm-up included)")
    parser.add_argument("--precision", type=float, default=0.01)
    parser.add_argument("--quiet-factor", type=float, default=2.0, help="the quiet runs' budget, times --max-time")
    parser.add_argument("--max-load", type=float, default=1800.0, help="seconds after which a loader exits")
    args = parser.parse_args()

    import torch

    shape = tuple(int(d) for d in args.input.split("x"))
    specs = [get_spec(name) for name in args.models.split(",")]
    cells = plan_cells(specs, ["cpu"], [args.batch], [shape], ["infer"], ["fp32"], threads=args.threads)
    options = MeasureOptions(args.precision, args.max_time)
    quiet_options = MeasureOptions(args.precision, args.max_time * args.quiet_factor)
    caches = RunCaches()
    interleaving = Interleaving(specs[0].name)
    folder = Path(tempfile.mkdtemp())
    runs = iter(range(10**6))

    def timed_sweep(some_cells, interleaved: bool, how: MeasureOptions = options):
        start = time.monotonic()
        result = run_sweep(some_cells, folder / f"run-{next(runs)}.csv", resume=False, options=how, caches=caches,
                           interleave=interleaving if interleaved else None)
        for row in result.rows:
            if row.status != "ok":
                sys.exit(f"a cell failed: {row.error}")
        return result.rows, (start, time.monotonic())

    def sweep(interleaved: bool, load: SquareWave):
        """The two rows, and the share of each one's sampling time the loaders ran (what the load check reads:
        not the build or the warm-up). A row's samples end with its sweep; interleaved, the two rows' samples
        alternate, so both share the window of all their samples."""
        if interleaved:
            (reference, other), (_, end) = timed_sweep(cells, True)
            sampled = sum(reference.samples_ms) + sum(other.samples_ms)
            windows = [(end - sampled / 1e3, end)] * 2
        else:
            ((reference,), (_, first)), ((other,), (_, second)) = (timed_sweep(cells[:1], False),
                                                                   timed_sweep(cells[1:], False))
            windows = [(first - sum(reference.samples_ms) / 1e3, first), (second - sum(other.samples_ms) / 1e3, second)]
        return reference, other, [load.on_share(*w) for w in windows]

    quiet_runs: list[tuple] = []  # (reference row, other row) of every quiet run, in order

    def quiet_run() -> float:
        (reference, other), _ = timed_sweep(cells, True, quiet_options)
        if math.isnan(other.paired_ratio):
            sys.exit("a quiet run is not comparable (measured under load): this machine is not quiet; run it alone")
        quiet_runs.append((reference, other))
        return other.paired_ratio

    print(f"torch {torch.__version__}, cpu ({os.cpu_count()} cores), threads {args.threads}: {specs[1].name} / "
          f"{specs[0].name} (time ratio), infer batch {args.batch} {args.input}, precision ±{args.precision:.0%}, "
          f"{args.max_time:g} s per model ({args.max_time * args.quiet_factor:g} s in the quiet runs); "
          f"{args.loaders} loader process(es)")

    found_by_wave: dict[str, list[tuple[dict, int]]] = {}  # wave -> (ratios of the methods, index of the quiet run before)
    tally = Tally()
    for wave in args.waves.split(","):
        on_s, off_s = (float(v) for v in wave.split("/"))
        found_by_wave[wave] = []
        if not quiet_runs:
            quiet_run()
        for _ in range(args.repetitions):
            found: dict[str, tuple[float, float, float, float]] = {}  # method -> ratio, low, high, loaders' share
            for interleaved in (False, True):
                # each method under a wave of its own, starting ON: run after another method, it could fall
                # wholly in an OFF phase of a 10 s / 10 s wave and measure nothing of the load
                load = SquareWave(on_s, off_s, args.loaders, args.max_load)
                try:
                    reference, other, shares = sweep(interleaved, load)
                finally:
                    load.stop()
                tally.count(reference, other, shares, interleaved)
                plain = (*time_ratio_unpaired(reference, other), statistics.mean(shares))
                if interleaved:
                    found.update({"interleaved, paired": (*time_ratio_paired(other), shares[0]),
                                  "interleaved rows' own unpaired": plain})
                else:
                    found["unpaired"] = plain
            found_by_wave[wave].append((found, len(quiet_runs) - 1))
            quiet_run()

    quiet_ratios = [other.paired_ratio for _, other in quiet_runs]
    overall = statistics.median(quiet_ratios)
    floor = [error(r, overall) for r in quiet_ratios]
    tally.quiet_medians = {specs[0].name: statistics.median(r.median_ms for r, _ in quiet_runs),
                           specs[1].name: statistics.median(o.median_ms for _, o in quiet_runs)}
    print(f"quiet runs: {', '.join(f'×{r:.4f}' for r in quiet_ratios)}; median ×{overall:.4f}; each against the "
          f"median: median error {statistics.median(floor):.1%}, worst {max(floor):.1%} (the machine's own floor)")
    for wave, repetitions in found_by_wave.items():
        report_wave(wave, repetitions, quiet_ratios, overall)
    tally.report(quiet_runs)


class Tally:
    """The load check's counts over the cells measured under the waves, and each flagged interleaved cell's
    printed slowdown against its real one (its median under the wave / the quiet runs' median)."""

    def __init__(self):
        self.flagged = self.measured = self.overlapped = self.flagged_overlapped = 0
        self.rows: list[tuple] = []  # (row, ON share, interleaved) of every cell under a wave
        self.quiet_medians: dict[str, float] = {}

    def count(self, reference, other, shares, interleaved: bool) -> None:
        for row, share in zip((reference, other), shares):
            self.measured += 1
            self.flagged += row.under_load
            self.overlapped += share >= OVERLAP
            self.flagged_overlapped += share >= OVERLAP and row.under_load
            self.rows.append((row, share, interleaved))

    def report(self, quiet_runs) -> None:
        quiet_flags = sum(r.under_load + o.under_load for r, o in quiet_runs)
        print(f"\nload check: {self.flagged_overlapped}/{self.overlapped} cells flagged of those measured under the "
              f"waves (the loaders ran during {OVERLAP:.0%} or more of their sampling: "
              f"{self.flagged_overlapped / max(self.overlapped, 1):.0%}); {quiet_flags}/{2 * len(quiet_runs)} on the "
              f"quiet machine")
        print(f"  of all {self.measured} cells run while a wave was on: {self.flagged} flagged")
        for row, share, _ in self.rows:
            if not row.under_load:
                print(f"  not flagged: {row.model:<14} loaders ran {share:4.0%} of its sampling, real slowdown "
                      f"×{row.median_ms / self.quiet_medians[row.model]:.2f}")
        slowdowns = [(row.model, row.load_ratio, row.median_ms / self.quiet_medians[row.model])
                     for row, _, interleaved in self.rows if interleaved and row.under_load]
        if slowdowns:
            within = sum(0.5 <= printed / real <= 2 for _, printed, real in slowdowns if printed == printed)
            print(f"printed slowdown vs real (median under the wave / quiet median), flagged interleaved cells: "
                  f"{within}/{len(slowdowns)} within 2×")
            for model, printed, real in slowdowns:
                print(f"  {model:<14} printed ×{printed:.2f}   real ×{real:.2f}")


def report_wave(wave: str, repetitions: list[tuple[dict, int]], quiet_ratios: list[float], overall: float) -> None:
    """Each method's ratios under one wave, their errors against each repetition's quiet reference (the mean
    of the quiet runs before and after it) and against the median of all quiet runs, and CI coverage; below
    each method, the share of its sampling time the loaders ran, repetition by repetition."""
    on_s, off_s = wave.split("/")
    print(f"\nsquare wave {on_s} s on / {off_s} s off, {len(repetitions)} repetitions "
          f"(quiet references: {', '.join(f'×{bracket(quiet_ratios, before):.4f}' for _, before in repetitions)}):")
    print(f"  {'method':<31} {'ratios':<37} {'median err':>10} {'worst err':>9} {'CI covers':>9} "
          f"{'not comparable':>14} {'worst vs all quiet':>18}")
    for name in ("unpaired", "interleaved, paired", "interleaved rows' own unpaired"):
        ratios, errors, overall_errors, covered = [], [], [], []
        shares = [found[name][3] for found, _ in repetitions]
        for found, before in repetitions:
            ratio, low, high, _ = found[name]
            if math.isnan(ratio):
                continue
            reference = bracket(quiet_ratios, before)
            ratios.append(ratio)
            errors.append(error(ratio, reference))
            overall_errors.append(error(ratio, overall))
            covered.append(low <= reference <= high)
        errors = errors or [math.nan]
        shown = ", ".join(f"{r:.3f}" for r in ratios)
        print(f"  {name:<31} {shown:<37} {statistics.median(errors):>10.1%} {max(errors):>9.1%} "
              f"{sum(covered):>4}/{len(covered)} {len(repetitions) - len(ratios):>9}/{len(repetitions)} "
              f"{max(overall_errors or [math.nan]):>18.1%}")
        print(f"  {'':<31} loaders ran {', '.join(f'{share:.0%}' for share in shares)} of its sampling")


def bracket(quiet_ratios: list[float], before: int) -> float:
    """A repetition's quiet reference: the mean of the quiet runs just before and just after it."""
    return (quiet_ratios[before] + quiet_ratios[before + 1]) / 2


if __name__ == "__main__":
    main()
