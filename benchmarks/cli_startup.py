"""Wall time of `archbench --help`, `archbench list` and `archbench check` (median of several runs).

    python benchmarks/cli_startup.py [--runs 5]

Each command runs in a fresh interpreter, as a user would run it. `--help` and `list --source specs`
must not import torch; `list` (all sources) imports torchvision to list its zoo; `check` builds every
model on the meta device.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = [
    ["--help"],
    ["list", "--source", "specs"],
    ["list"],
    ["check", "--source", "specs"],
    ["check"],
]


def time_command(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "archbench", *args], capture_output=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"archbench {' '.join(args)} failed:\n{proc.stderr.decode()}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    import_torch = time_command_python("import torch", runs)
    print(f"{'command':<40} {'median_s':>9} {'min_s':>7} {'max_s':>7}  (runs={runs})")
    reference = 'python -c "import torch" (reference)'
    print(f"{reference:<40} {statistics.median(import_torch):9.3f} {min(import_torch):7.3f} {max(import_torch):7.3f}")
    for args in COMMANDS:
        times = time_command(args, runs if args[0] != "check" or len(args) > 1 else max(1, runs // 2))
        label = "archbench " + " ".join(args)
        print(f"{label:<40} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f}")


def time_command_python(code: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
