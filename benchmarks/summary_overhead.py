"""Wall time of ``archbench summary`` against a floor: a plain script that imports torch, builds the same
model, runs torchinfo once and fvcore once (what users paste together today). Target: at most 1.3x.

Both run as fresh processes, alternating (floor, summary, floor, ...) so that drift in machine load hits
both alike; the medians and their ratio are printed.

    python benchmarks/summary_overhead.py [--model wrn-40-10] [--input 3x64x64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

FLOOR = """
import warnings
import torch, torchinfo
from archbench.catalog.registry import build_model, get_spec
model = build_model(get_spec({model!r}))
torchinfo.summary(model, input_size=(1, {c}, {h}, {w}), verbose=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fvcore.nn import FlopCountAnalysis
    analysis = FlopCountAnalysis(model, torch.randn(1, {c}, {h}, {w}))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.total()
"""


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wrn-40-10")
    parser.add_argument("--input", default="3x64x64")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    c, h, w = (int(d) for d in args.input.split("x"))
    floor_cmd = [sys.executable, "-c", FLOOR.format(model=args.model, c=c, h=h, w=w)]
    summary_cmd = [sys.executable, "-m", "archbench", "summary", args.model, "--input", args.input]

    wall_time(summary_cmd)  # warm the file cache for both
    floors, summaries = [], []
    for _ in range(args.repeats):
        floors.append(wall_time(floor_cmd))
        summaries.append(wall_time(summary_cmd))
    floor, summary = statistics.median(floors), statistics.median(summaries)
    print(f"model {args.model} at {args.input}, {args.repeats} alternating runs each (fresh processes)")
    print(f"floor (import torch, build, torchinfo once, fvcore once): median {floor:.2f} s  runs {_fmt(floors)}")
    print(f"archbench summary:                                      median {summary:.2f} s  runs {_fmt(summaries)}")
    print(f"ratio summary / floor: {summary / floor:.2f}x (target <= 1.3x)")


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
