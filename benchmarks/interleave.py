"""Model by model vs interleaved: how steady is a relative speed on a shared machine? (A benchmark, not a
test: it prints figures.)

The same two-model comparison (default: wrn-16-8 against resnext-50, 3x32x32, batch 1, infer, CPU, one
thread: two threads on a 2-core machine shared with other work wait for each other at every barrier, and
a step can take 100x longer) is run --repetitions times each way through the sweep (``run_sweep``), the
methods alternating (unpaired, interleaved, unpaired, ...) so the machine's slow changes fall on both:

* unpaired: ``--no-interleave`` — each model's cell timed in turn, up to --max-time each; relative speed
  = m_ref / m with the interval from the two medians' CI ends (the report's unpaired figure);
* interleaved: the default — the two models in alternating rounds, up to 2 x --max-time in all; relative
  speed = 1 / the median per-round time ratio, with its order-statistic CI (the report's "paired" figure).
  The unpaired figure of the interleaved rows (their own medians) is shown too.

For each method: every repetition's relative speed, CI half-width (relative) and wall time, then the
spread of the relative speed across repetitions (min / median / max, and (max - min) / median) and the
median CI half-width. A method that is right about its uncertainty has a spread no wider than its CIs.
Both methods get the same precision target (tight: --precision 0.01) and time per model; either may
stop at the precision before its budget is spent (n and rounds show how far each went). Last, the wall
time of ``archbench list`` (a fresh interpreter, --list-runs times).

Usage: python benchmarks/interleave.py [--models resnext-50,wrn-16-8] [--batch 1] [--repetitions 5]
       [--max-time 4] [--precision 0.01] [--threads 1] [--list-runs 5]
Absolute times on a shared machine are noisy; that noise is what this benchmark is about.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archbench.catalog.registry import get_spec
from archbench.sweep.cells import plan_cells
from archbench.sweep.interleave import Interleaving
from archbench.sweep.run import RunCaches, run_sweep
from archbench.timing.options import MeasureOptions


def unpaired(reference, row) -> tuple[float, float]:
    """The report's unpaired relative speed m_ref / m and the relative half-width of its interval."""
    ratio = reference.median_ms / row.median_ms
    low, high = reference.ci_low_ms / row.ci_high_ms, reference.ci_high_ms / row.ci_low_ms
    return ratio, max(ratio - low, high - ratio) / ratio


def paired(row) -> tuple[float, float]:
    """The report's paired relative speed 1 / paired_ratio and the relative half-width of its CI."""
    ratio = 1 / row.paired_ratio
    low, high = 1 / row.paired_ratio_high, 1 / row.paired_ratio_low
    return ratio, max(ratio - low, high - ratio) / ratio


def run_once(cells, options: MeasureOptions, interleave: Interleaving | None, caches: RunCaches, folder: Path, n: int):
    began = time.perf_counter()
    result = run_sweep(cells, folder / f"run-{n}.csv", resume=False, options=options, caches=caches, interleave=interleave)
    wall = time.perf_counter() - began
    reference, other = result.rows
    if reference.status != "ok" or other.status != "ok":
        sys.exit(f"a cell failed: {reference.error or other.error}")
    return reference, other, wall


def spread(label: str, values: list[tuple[float, float]]) -> str:
    speeds, halves = [v[0] for v in values], [v[1] for v in values]
    mid = statistics.median(speeds)
    return (f"{label:<26} ×{min(speeds):.3f} / ×{mid:.3f} / ×{max(speeds):.3f}   spread {(max(speeds) - min(speeds)) / mid:6.2%}"
            f"   median CI ±{statistics.median(halves):6.2%}")


def list_timing(runs: int) -> str:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "archbench", "list"], check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return f"archbench list (fresh interpreter, {runs} runs): min {min(times):.2f} s, median {statistics.median(times):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnext-50,wrn-16-8", help="reference first")
    parser.add_argument("--input", default="3x32x32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--mode", default="infer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--max-time", type=float, default=4.0, help="seconds per model (warm-up included)")
    parser.add_argument("--precision", type=float, default=0.01)
    parser.add_argument("--list-runs", type=int, default=5)
    args = parser.parse_args()

    import torch

    shape = tuple(int(d) for d in args.input.split("x"))
    specs = [get_spec(name) for name in args.models.split(",")]
    cells = plan_cells(specs, ["cpu"], [args.batch], [shape], [args.mode], ["fp32"], threads=args.threads)
    options = MeasureOptions(args.precision, args.max_time)
    caches = RunCaches()  # one device peak and FLOP count for every run
    interleaving = Interleaving(specs[0].name)
    print(f"torch {torch.__version__}, cpu, threads {args.threads}: {specs[1].name} against {specs[0].name}, "
          f"{args.mode} batch {args.batch} {args.input}, precision ±{args.precision:.0%}, {args.max_time:g} s per model, "
          f"{args.repetitions} repetitions per method (alternating)")
    print(f"{'rep':>3} {'method':<12} {'×unpaired':>9} {'CI±':>7} {'×paired':>9} {'CI±':>7} {'rounds':>6} "
          f"{'n ref/other':>11} {'wall s':>7}")
    results: dict[str, list[tuple[float, float]]] = {"unpaired": [], "interleaved (unpaired)": [], "interleaved (paired)": []}
    with tempfile.TemporaryDirectory() as folder:
        for repetition in range(args.repetitions):
            for method in ("unpaired", "interleaved"):
                reference, other, wall = run_once(cells, options, interleaving if method == "interleaved" else None,
                                                  caches, Path(folder), 2 * repetition + (method == "interleaved"))
                plain = unpaired(reference, other)
                if method == "unpaired":
                    results["unpaired"].append(plain)
                    shown = ["—", "—"]
                else:
                    results["interleaved (unpaired)"].append(plain)
                    results["interleaved (paired)"].append(paired(other))
                    shown = [f"×{paired(other)[0]:.3f}", f"±{paired(other)[1]:.2%}"]
                print(f"{repetition + 1:>3} {method:<12} {f'×{plain[0]:.3f}':>9} {f'±{plain[1]:.2%}':>7} {shown[0]:>9} {shown[1]:>7} "
                      f"{other.rounds:>6} {f'{reference.n_samples}/{other.n_samples}':>11} {wall:>7.1f}", flush=True)
    print()
    print(f"{'relative speed':<26} min / median / max across repetitions")
    for label, values in results.items():
        print(spread(label, values))
    print("CI±: half-width of the interval, relative to the ratio (unpaired: from the CI ends of the two medians; "
          "paired: order-statistic CI of the median per-round ratio). spread: (max - min) / median.")
    print()
    print(list_timing(args.list_runs))


if __name__ == "__main__":
    main()
