"""Real archbench files for the fuzzer to mutate, made once per session by one tiny real run of each
kind (mnist-cnn, one cell, 0.05 s): a compare report folder, a bench CSV with its env.json, and a results
store holding both runs (run 1 the compare, run 2 the bench)."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

BENCH_ARGS = ["bench", "mnist-cnn", "--mode", "infer", "--batch", "1", "--max-time", "0.05"]
COMPARE_ARGS = ["compare", "mnist-cnn", "--mode", "infer", "--batch", "1", "--max-time", "0.05"]


@dataclass(frozen=True)
class RealFiles:
    report_dir: Path  # a compare report: report.md, results.csv, results.json, plots
    bench_csv: Path  # with bench.env.json beside it
    store: Path  # runs 1 (the compare) and 2 (the bench)

    @property
    def compare_csv(self) -> Path:
        return self.report_dir / "results.csv"


@pytest.fixture(scope="session")
def real_files(tmp_path_factory) -> RealFiles:
    from archbench.cli import main

    root = tmp_path_factory.mktemp("fuzz-real")
    files = RealFiles(root / "report", root / "bench.csv", root / "store.db")
    live = root / "live.db"
    for argv in ([*COMPARE_ARGS, "--out", str(files.report_dir)], [*BENCH_ARGS, "--out", str(files.bench_csv)]):
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown), pytest.raises(SystemExit) as ended:
            main([*argv, "--db", str(live)])
            raise SystemExit(0)
        assert ended.value.code in (0, None), f"archbench {' '.join(argv)} failed:\n{shown.getvalue()}"
    # One self-contained file (nothing left in a -wal beside it), so a plain file copy is the whole store.
    with contextlib.closing(sqlite3.connect(live)) as source, contextlib.closing(sqlite3.connect(files.store)) as copy:
        source.backup(copy)
    assert (files.report_dir / "results.json").is_file() and files.bench_csv.with_suffix(".env.json").is_file()
    return files
