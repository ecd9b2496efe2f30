"""Fuzz: a real results store (two runs: a compare and a bench of mnist-cnn), its contents mutated in SQL
— env or report JSON corrupted, sample blobs cut short, values of the wrong type, rows or whole tables
missing, a foreign schema version — then read by `history`, `report`, `diff`, `collect` and written by a
`bench` that records into it.

Exit codes: a reader may exit 0 (what it needs was not touched) or 2 (the store's content is refused,
named); `diff` may exit 1 (an edited sample is a regression), `collect` 1 or 2 (these runs were not
detached), `bench` 0 or 2 (recorded; or the store refused before measuring) — or 1 if its one cell fails.
After every case the store must pass `PRAGMA integrity_check`.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import BENCH_ARGS
from tests.fuzz.harness import Case, fuzz_settings, run_case
from tests.fuzz.mutations import HUGE_INTS, WEIRD_STRINGS

pytestmark = pytest.mark.fuzz  # in the default run; pytest -m fuzz runs the fuzzer alone (see tests/fuzz/harness.py)

CELL_COLUMNS = ["model", "device", "mode", "batch", "input", "dtype", "channels_last", "compiled", "threads",
                "status", "error", "n_samples", "median_ms", "iqr_ms", "ci_low_ms", "ci_high_ms", "samples_per_s",
                "flops_per_step", "peak_fraction", "peak_mem_mb", "stop_reason", "ci_coverage", "load_ratio",
                "precision", "max_time_s", "min_samples", "rounds", "paired_ratio"]
RUN_COLUMNS = ["started_utc", "finished_utc", "command", "title", "out_path", "planned_cells", "git_commit"]
SQL_VALUES = [None, 0, -1, 1.5, float("nan"), float("inf"), 2**63 - 1, -(2**63), b"\x00\x01", "",
              "abc", "３", "2026-13-45T99:99:99", *HUGE_INTS[:6], *WEIRD_STRINGS]
JSON_TEXTS = ["", "{", "[]", "null", "42", '"text"', "{}", '{"torch": null}', '{"devices": 5}',
              '{"devices": {"cpu": 3}}', '{"threads": "many"}', "[" * 3000 + "]" * 3000, "{\"torch\": \"\\u0000\"}"]


def _sql_mutations():
    sql_value = st.one_of(st.sampled_from(SQL_VALUES), st.integers(), st.text(max_size=8))
    run_id = st.sampled_from([1, 2])
    return st.one_of(
        st.tuples(st.sampled_from(["env", "report"]), st.sampled_from(JSON_TEXTS), run_id).map(
            lambda t: (f"UPDATE runs SET {t[0]} = ? WHERE id = ?", (t[1], t[2]))),
        st.tuples(st.sampled_from(RUN_COLUMNS), sql_value, run_id).map(
            lambda t: (f"UPDATE runs SET {t[0]} = ? WHERE id = ?", (t[1], t[2]))),
        st.tuples(st.sampled_from(CELL_COLUMNS), sql_value, run_id).map(
            lambda t: (f'UPDATE cells SET "{t[0]}" = ? WHERE run_id = ?', (t[1], t[2]))),
        st.sampled_from([b"", b"\x00", b"\x00" * 7, b"\x00" * 9, "text", None, 3]).map(
            lambda blob: ("UPDATE samples SET samples_ms = ?", (blob,))),
        st.sampled_from(["tflops", "threads", "device", "dtype"]).flatmap(lambda column: sql_value.map(
            lambda value: (f"UPDATE device_peaks SET {column} = ?", (value,)))),
        st.sampled_from(["samples", "cells", "device_peaks", "runs"]).map(lambda table: (f"DROP TABLE {table}", ())),
        st.sampled_from(["DELETE FROM samples", "DELETE FROM cells", "DELETE FROM runs WHERE id = 1",
                         "DELETE FROM device_peaks", "UPDATE runs SET id = id + 100 WHERE id = 2",
                         "UPDATE cells SET run_id = 7", "UPDATE samples SET cell_id = cell_id + 50",
                         "CREATE TABLE extra (x)", "ALTER TABLE runs DROP COLUMN report",
                         "ALTER TABLE cells RENAME COLUMN batch TO batch_size"]).map(lambda s: (s, ())),
        st.sampled_from([0, 2, 999, -1]).map(lambda version: (f"PRAGMA user_version = {version}", ())),
    )


COMMANDS = [
    (["history", "--db", "{dir}/store.db"], {0, 2}),
    (["history", "mnist-cnn", "--device", "cpu", "--json", "--db", "{dir}/store.db"], {0, 2}),
    (["report", "1", "--out", "{dir}/r1", "--db", "{dir}/store.db"], {0, 2}),
    (["report", "latest", "--out", "{dir}/r2", "--db", "{dir}/store.db"], {0, 2}),
    (["diff", "1", "2", "--db", "{dir}/store.db"], {0, 1, 2}),
    (["diff", "latest~1", "latest", "--json", "--db", "{dir}/store.db"], {0, 1, 2}),
    (["collect", "2", "--db", "{dir}/store.db"], {1, 2}),
    ([*BENCH_ARGS, "--out", "{dir}/b.csv", "--db", "{dir}/store.db"], {0, 1, 2}),
]


@st.composite
def store_cases(draw, real) -> Case:
    statements = draw(st.lists(_sql_mutations(), min_size=1, max_size=3))
    argv, exits = draw(st.sampled_from(COMMANDS))
    why = "; ".join(f"{s} {json.dumps(p, default=repr)[:60]}" if p else s for s, p in statements)
    return Case(argv, frozenset(exits), why, copies={"store.db": real.store}, sql=statements, store="store.db")


@fuzz_settings(15)
@given(data=st.data())
def test_mutated_store_contents(cli, tmp_path, real_files, data):
    run_case(cli, data.draw(store_cases(real_files), label="case"), tmp_path)
