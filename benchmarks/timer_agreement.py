"""Fidelity and efficiency of archbench's timing engine (a benchmark, not a test: it prints figures).

For a few fixed cells (default: wrn-16-8 and resnext-50 at 3x32x32, batch 8, infer and train, CPU, a fixed
thread count), on the same model, input and step function, in the same process:

1. agreement: archbench's median vs ``torch.utils.benchmark.Timer(...).blocked_autorange()``'s median
   (target: within ±3%), in --rounds back-to-back pairs whose order alternates (archbench first, then
   Timer first, ...): a shared machine's speed drifts by more than 3% within a minute, so each pair is
   compared on its own and the median of the pairs' differences is reported;
2. efficiency: a fixed 10-warm-up + 40-iteration loop (what hand-written scripts do) against archbench
   asked for the precision that loop reached (the half-width of its median's 95% CI): the wall time
   each spends (target: archbench no slower). archbench's own run at --precision is shown as well.

Usage: python benchmarks/timer_agreement.py [--device cpu] [--threads 2] [--precision 0.02]
Figures taken on a shared machine are noisy; run it when the machine is otherwise idle.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch

from archbench.catalog.registry import get_spec
from archbench.sweep.cells import plan_cells
from archbench.timing.options import MeasureOptions
from archbench.timing.stats import Measurement, median_ci
from archbench.timing.step import make_images, make_step
from archbench.timing.timer import make_sampler, measure

logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found" on CPU boxes
import torch.utils.benchmark as tb  # noqa: E402 - after the line above, which silences its import-time warning


def ci_half_width(samples) -> float:
    low, high, _ = median_ci(samples)
    mid = statistics.median(samples)
    return max(mid - low, high - mid) / mid


def fixed_loop(step, device: str, warmup: int = 10, iterations: int = 40) -> tuple[list[float], float]:
    """The hand-written baseline: 10 warm-up iterations, then 40 timed ones."""
    sample = make_sampler(step, device)
    began = time.perf_counter()
    for _ in range(warmup):
        sample()
    samples = [sample() for _ in range(iterations)]
    return samples, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="wrn-16-8,resnext-50")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--input", default="3x32x32")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", type=float, default=0.02)
    parser.add_argument("--max-time", type=float, default=120.0, help="archbench's per-cell budget (s), efficiency runs")
    parser.add_argument("--rounds", type=int, default=3, help="archbench/Timer pairs for the agreement")
    parser.add_argument("--round-time", type=float, default=10.0, help="archbench's budget (s) in an agreement round")
    parser.add_argument("--timer-min-run-time", type=float, default=5.0, help="blocked_autorange min_run_time (s)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    shape = tuple(int(d) for d in args.input.split("x"))
    specs = [get_spec(name) for name in args.models.split(",")]
    cells = plan_cells(specs, [args.device], [args.batch], [shape], ["infer", "train"], ["fp32"], threads=args.threads)
    print(f"torch {torch.__version__}, device {args.device}, threads {args.threads}, precision ±{args.precision:.0%}, "
          f"Timer min_run_time {args.timer_min_run_time} s")
    header = (f"{'cell':<30} {'archbench ms':>12} {'Timer ms':>9} {'diff':>6} {'(rounds)':<20} | {'archbench s':>11} {'n':>3} "
              f"{'warm':>4} {'CI±':>6} {'stop':>9} | {'fixed s':>7} {'CI±':>6} | {'same CI s':>9} {'CI±':>6} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for cell in cells:
        model = cell.source.build(cell.device)
        inputs = make_images(cell.batch, cell.input, cell.device)
        step = make_step(model, inputs, cell.mode, cell.dtype, cell.device)

        timer = tb.Timer(stmt="step()", globals={"step": step}, num_threads=args.threads,
                         label=cell.model, sub_label=cell.mode)
        pairs = []  # (archbench median ms, Timer median ms), one per round
        for round_ in range(args.rounds):
            timer_first = round_ % 2 == 1
            if timer_first:
                ref_ms = timer.blocked_autorange(min_run_time=args.timer_min_run_time).median * 1e3
            ours_ms = measure(step, cell.device, MeasureOptions(args.precision, args.round_time)).median_ms
            if not timer_first:
                ref_ms = timer.blocked_autorange(min_run_time=args.timer_min_run_time).median * 1e3
            pairs.append((ours_ms, ref_ms))
        diffs = [a / t - 1 for a, t in pairs]

        ours: Measurement = measure(step, cell.device, MeasureOptions(args.precision, args.max_time))
        fixed, fixed_wall = fixed_loop(step, cell.device)
        fixed_ci = ci_half_width(fixed)
        matched: Measurement = measure(step, cell.device, MeasureOptions(max(fixed_ci, 0.002), args.max_time))

        label = f"{cell.model} {cell.mode} b{cell.batch} {cell.input_str}"
        rounds = "/".join(f"{d:+.1%}" for d in diffs)
        print(f"{label:<30} {statistics.median(a for a, _ in pairs):>12.2f} {statistics.median(t for _, t in pairs):>9.2f} "
              f"{statistics.median(diffs):>+6.1%} {rounds:<20} | {ours.wall_s:>11.1f} "
              f"{ours.n_samples:>3} {len(ours.warmup_ms):>4} {ci_half_width(ours.samples_ms):>6.1%} {ours.stop_reason:>9} | "
              f"{fixed_wall:>7.1f} {fixed_ci:>6.1%} | {matched.wall_s:>9.1f} {ci_half_width(matched.samples_ms):>6.1%} "
              f"{matched.wall_s / fixed_wall:>6.2f}", flush=True)
        del model, inputs, step
    print("diff: median over the rounds of archbench's median / Timer's median - 1 (target within ±3%). archbench s, n, warm, "
          "CI±, stop: one archbench run at --precision. same CI: archbench asked for the "
          "fixed loop's CI±; ratio: its wall time / the fixed loop's (target <= 1). CI±: half-width of the 95% CI of the "
          "median, relative.")


if __name__ == "__main__":
    main()
