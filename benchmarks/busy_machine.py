"""Relative speed on a busy machine: does the comparison hold, and does the load check tell the truth?
(A benchmark, not a test: it prints figures. Run it alone: anything else running is more load.)

The experiment of issue 24, built in. Two models (default: resnext-50 as the reference, wrn-16-8;
3x32x32, batch 1, infer, CPU, 1 thread, precision 1%, --max-time s per model) are first compared on the
quiet machine, interleaved: the **quiet reference** ratio (time of wrn-16-8 / time of resnext-50) and its
CI, and each model's quiet median. Then, under each square-wave load of --waves (``ON/OFF`` seconds, default
``2/2`` and ``10/10``): --loaders busy processes (default 2: one per core of this machine) that this script
starts, stops (SIGSTOP) and resumes (SIGCONT) on the schedule, and kills when the wave ends (each also
exits by itself after --max-load s, so nothing outlives the script). Under each wave, --repetitions
repetitions of each method, alternating:

* **unpaired** (``--no-interleave``): each model's cell in turn; ratio of the two medians;
* **interleaved, paired**: the default — alternating rounds; the paired ratio (its quiet rounds). A point
  whose rounds are too rarely quiet goes on up to three times its budget, and is then "not comparable
  (measured under load)" (NaN): counted apart — neither an error nor a ratio — and printed;
* **interleaved rows' own unpaired**: the ratio of the same rows' medians.

Printed per wave and method: every ratio, its error against the quiet reference, the median and worst
error, how often the CI covers the quiet ratio (of the ratios given), and how many were not comparable.
Then the load check: cells flagged under the waves
(of all cells measured under them; then of the cells the loaders ran during a quarter or more of — a 6 s cell
under the 10 s/10 s wave can fall in an OFF phase — with each cell not flagged, the share of its time the
loaders ran and its real slowdown) and on the quiet machine (of the quiet cells), and for each flagged
interleaved cell the printed slowdown (``load_ratio``: the estimated inflation of its median) beside its
real slowdown (its median under the wave / its quiet median).

Usage: python benchmarks/busy_machine.py [--models resnext-50,wrn-16-8] [--repetitions 5] [--waves 2/2,10/10]
       [--max-time 6] [--precision 0.01] [--threads 1] [--loaders 2] [--quiet-runs 2]
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

OVERLAP = 0.25  # a cell the loaders ran during this share of its time or more counts as measured under load
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
    parser.add_argument("--quiet-runs", type=int, default=2, help="interleaved runs on the quiet machine")
    parser.add_argument("--max-load", type=float, default=1800.0, help="seconds after which a loader exits")
    args = parser.parse_args()

    import torch

    shape = tuple(int(d) for d in args.input.split("x"))
    specs = [get_spec(name) for name in args.models.split(",")]
    cells = plan_cells(specs, ["cpu"], [args.batch], [shape], ["infer"], ["fp32"], threads=args.threads)
    options = MeasureOptions(args.precision, args.max_time)
    caches = RunCaches()
    interleaving = Interleaving(specs[0].name)
    folder = Path(tempfile.mkdtemp())
    runs = iter(range(10**6))

    def timed_sweep(some_cells, interleaved: bool):
        start = time.monotonic()
        result = run_sweep(some_cells, folder / f"run-{next(runs)}.csv", resume=False, options=options, caches=caches,
                           interleave=interleaving if interleaved else None)
        for row in result.rows:
            if row.status != "ok":
                sys.exit(f"a cell failed: {row.error}")
        return result.rows, (start, time.monotonic())

    def sweep(interleaved: bool, load: SquareWave | None = None):
        """The two rows, and the share of each one's time the loaders ran (unpaired: each cell its own sweep,
        so each has its own window; interleaved: both share one)."""
        if interleaved:
            (reference, other), window = timed_sweep(cells, True)
            windows = [window, window]
        else:
            ((reference,), first), ((other,), second) = timed_sweep(cells[:1], False), timed_sweep(cells[1:], False)
            windows = [first, second]
        shares = [load.on_share(*w) if load is not None else 0.0 for w in windows]
        return reference, other, shares

    print(f"torch {torch.__version__}, cpu ({os.cpu_count()} cores), threads {args.threads}: {specs[1].name} / "
          f"{specs[0].name} (time ratio), infer batch {args.batch} {args.input}, precision ±{args.precision:.0%}, "
          f"{args.max_time:g} s per model; {args.loaders} loader process(es)")

    quiet_rows = [sweep(True)[:2] for _ in range(args.quiet_runs)]
    quiet_ratios = [other.paired_ratio for _, other in quiet_rows]
    if any(math.isnan(r) for r in quiet_ratios):
        sys.exit("the quiet reference is not comparable (measured under load): this machine is not quiet; run it alone")
    quiet = statistics.median(quiet_ratios)
    first = quiet_rows[0][1]
    quiet_medians = {specs[0].name: statistics.median(r.median_ms for r, _ in quiet_rows),
                     specs[1].name: statistics.median(o.median_ms for _, o in quiet_rows)}
    quiet_flags = sum(r.under_load + o.under_load for r, o in quiet_rows)
    quiet_cells = 2 * len(quiet_rows)
    print(f"quiet reference: ×{quiet:.4f} (runs: {', '.join(f'×{r:.4f}' for r in quiet_ratios)}; first run's CI "
          f"{first.paired_ratio_low:.4f}–{first.paired_ratio_high:.4f}); quiet medians "
          + ", ".join(f"{name} {ms:.2f} ms" for name, ms in quiet_medians.items()))

    flagged = measured = 0
    overlapped = flagged_overlapped = 0  # cells the loaders ran during a quarter or more of, and of those flagged
    unflagged: list[tuple[str, float, float]] = []  # (model, ON share, real slowdown) of cells not flagged
    slowdowns: list[tuple[str, float, float]] = []
    for wave in args.waves.split(","):
        on_s, off_s = (float(v) for v in wave.split("/"))
        methods = {"unpaired": Method(), "interleaved, paired": Method(), "interleaved rows' own unpaired": Method()}
        load = SquareWave(on_s, off_s, args.loaders, args.max_load)
        try:
            for _ in range(args.repetitions):
                for interleaved in (False, True):
                    reference, other, shares = sweep(interleaved, load)
                    measured += 2
                    flagged += reference.under_load + other.under_load
                    for row, share in zip((reference, other), shares):
                        overlapped += share >= OVERLAP
                        flagged_overlapped += share >= OVERLAP and row.under_load
                        if not row.under_load:
                            unflagged.append((row.model, share, row.median_ms / quiet_medians[row.model]))
                    plain = time_ratio_unpaired(reference, other)
                    if not interleaved:
                        found = {"unpaired": plain}
                    else:
                        found = {"interleaved, paired": time_ratio_paired(other), "interleaved rows' own unpaired": plain}
                        for row in (reference, other):
                            if row.under_load:
                                slowdowns.append((row.model, row.load_ratio, row.median_ms / quiet_medians[row.model]))
                    for name, (ratio, low, high) in found.items():
                        if math.isnan(ratio):
                            methods[name].not_comparable += 1
                            continue
                        methods[name].ratios.append(ratio)
                        methods[name].covered.append(low <= quiet <= high)
        finally:
            load.stop()
        print(f"\nsquare wave {on_s:g} s on / {off_s:g} s off, {args.repetitions} repetitions:")
        print(f"  {'method':<32} {'ratios':<52} {'median err':>10} {'worst err':>9} {'CI covers':>9} "
              f"{'not comparable':>14}")
        for name, method in methods.items():
            errors = [error(r, quiet) for r in method.ratios] or [math.nan]
            shown = ", ".join(f"{r:.3f}" for r in method.ratios)
            print(f"  {name:<32} {shown:<52} {statistics.median(errors):>10.1%} {max(errors):>9.1%} "
                  f"{sum(method.covered):>4}/{len(method.covered)} {method.not_comparable:>9}/{args.repetitions}")

    print(f"\nload check: {flagged}/{measured} cells flagged under the waves ({flagged / measured:.0%}); "
          f"{quiet_flags}/{quiet_cells} on the quiet machine")
    print(f"  of the cells the loaders ran during {OVERLAP:.0%} or more of: {flagged_overlapped}/{overlapped} flagged "
          f"({flagged_overlapped / max(overlapped, 1):.0%})")
    for model, share, real in unflagged:
        print(f"  not flagged: {model:<14} loaders ran {share:4.0%} of its time, real slowdown ×{real:.2f}")
    if slowdowns:
        within = sum(0.5 <= printed / real <= 2 for _, printed, real in slowdowns if printed == printed)
        print(f"printed slowdown vs real (median under the wave / quiet median), flagged interleaved cells: "
              f"{within}/{len(slowdowns)} within 2×")
        for model, printed, real in slowdowns:
            print(f"  {model:<14} printed ×{printed:.2f}   real ×{real:.2f}")


if __name__ == "__main__":
    main()
