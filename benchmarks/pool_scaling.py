"""Local worker pool: wall time of many small single-threaded CPU cells in this process, with 1 worker and
with 2 workers, and what a shard costs per cell. (A benchmark, not a test: it prints figures.)

The study: --models copies of mnist-cnn (each under its own name, so the pool can give them to different
workers) x batches 1, 2, 4, 8, infer, fp32, one thread per cell, --max-time seconds per cell, measured each
way through the executors (``archbench.execute.executors``) into a fresh CSV:

* in process: ``LocalExecutor`` (``run_sweep`` itself);
* 1 worker: ``LocalPool(1)`` — the same cells in one ``archbench run-cells`` process (pinned to one core);
* 2 workers: ``LocalPool(2)`` — half the models each, one core each.

"start-up" = wall(1 worker) - wall(in process): what the worker process costs once (starting Python,
importing torch, warming up, measuring the device peak). The per-cell cost of the shard itself is measured
apart, without a model: --rows rows with --samples raw samples each are written to a shard (one fsynced JSON
line each, as a worker does) and streamed back by the coordinator's collector (read, parsed, appended to the
run's CSV, fsynced), per row.

Usage: python benchmarks/pool_scaling.py [--models 4] [--max-time 0.2] [--repetitions 2] [--rows 200]
       [--samples 50]
Wall times on a shared machine are noisy; the repetitions are listed, and their median is what is quoted.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from archbench.catalog.registry import get_spec
from archbench.execute.executors import Collector, LocalExecutor
from archbench.execute.pool import LocalPool
from archbench.execute.workunits import ShardWriter, row_to_json
from archbench.rows import ResultRow
from archbench.sweep.cells import plan_cells
from archbench.sweep.run import RunCaches
from archbench.timing.options import MeasureOptions

BATCHES = [1, 2, 4, 8]


def study_cells(models: int):
    spec = get_spec("mnist-cnn")
    sources = [dataclasses.replace(spec, name=f"mnist-{i}") for i in range(models)]
    return plan_cells(sources, ["cpu"], BATCHES, None, ["infer"], ["fp32"], threads=1)


def wall_time(executor, cells, options: MeasureOptions, folder: Path) -> float:
    started = time.perf_counter()
    result = executor.run(cells, folder / "results.csv", resume=False, options=options, work_dir=folder / "shards")
    elapsed = time.perf_counter() - started
    assert len(result.rows) == len(cells) and all(r.status == "ok" for r in result.rows), "a cell failed"
    return elapsed


def shard_cost_per_row(rows: int, samples: int, folder: Path) -> tuple[float, float]:
    """Seconds per row to write a shard line (fsynced) and to stream it into the run (read, CSV, fsync)."""
    cells = study_cells(1)[:1]
    row = ResultRow(**{k: getattr(cells[0], k) for k in ("model", "device", "mode", "batch", "dtype", "threads")},
                    input=cells[0].input_str, n_samples=samples, median_ms=1.0, samples_ms=tuple(float(i) for i in range(samples)))
    writer = ShardWriter(folder / "bench.shard.jsonl")
    keys = [dataclasses.replace(row, batch=b) for b in range(1, rows + 1)]
    started = time.perf_counter()
    for r in keys:
        writer.write("row", row=row_to_json(r))
    write_s = (time.perf_counter() - started) / rows
    planned = [dataclasses.replace(cells[0], batch=b) for b in range(1, rows + 1)]
    collector = Collector(planned, folder / "streamed.csv", {}, MeasureOptions(), None, RunCaches())
    started = time.perf_counter()
    contents = collector.read(writer.path)
    stream_s = (time.perf_counter() - started) / rows
    assert len(contents.rows) == rows and len(collector.measured) == rows
    return write_s, stream_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--max-time", type=float, default=0.2)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()

    cells = study_cells(args.models)
    options = MeasureOptions(max_time_s=args.max_time)
    ways = {"in process": LocalExecutor, "1 worker": lambda: LocalPool(1), "2 workers": lambda: LocalPool(2)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    print(f"{len(cells)} cells: {args.models} x mnist-cnn, batches {BATCHES}, infer, 1 thread, --max-time {args.max_time:g} s")
    for repetition in range(args.repetitions):
        for name, make in ways.items():
            with tempfile.TemporaryDirectory() as tmp:
                times[name].append(wall_time(make(), cells, options, Path(tmp)))
            print(f"  repetition {repetition + 1}, {name:>10}: {times[name][-1]:6.1f} s")
    median = {name: statistics.median(values) for name, values in times.items()}
    print("median wall time: " + ", ".join(f"{name} {value:.1f} s" for name, value in median.items()))
    print(f"2 workers vs 1 worker: x{median['1 worker'] / median['2 workers']:.2f} faster; "
          f"vs in process: x{median['in process'] / median['2 workers']:.2f}")
    print(f"worker start-up (1 worker - in process): {median['1 worker'] - median['in process']:.1f} s "
          f"({(median['1 worker'] - median['in process']) / len(cells) * 1e3:.0f} ms per cell of this study)")
    with tempfile.TemporaryDirectory() as tmp:
        write_s, stream_s = shard_cost_per_row(args.rows, args.samples, Path(tmp))
    print(f"shard cost per cell ({args.samples} samples): write {write_s * 1e3:.2f} ms (fsynced line), "
          f"stream into the run {stream_s * 1e3:.2f} ms (read, CSV line fsynced)")


if __name__ == "__main__":
    main()
