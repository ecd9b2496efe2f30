"""Fuzz: results files archbench wrote (a compare report's results.csv and results.json, a bench CSV and its
env.json), mutated, then read back by `report`, `diff` and a resumed `bench`/`compare`.

Exit codes: a file no reader can decode (bytes that are not UTF-8, random bytes, an empty file) must be
refused, exit 2. An edited cell or key may still be readable: `report` then exits 0 (it renders what it
was given) or 2; `diff` may also exit 1 (an edited median is a regression); a resumed run may exit 1
when its one cell fails. A bench CSV's env.json that cannot be read leaves the rows intact: the reader may
go on without the environment (any exit), but must say so, naming the file.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import BENCH_ARGS, COMPARE_ARGS
from tests.fuzz.harness import Case, fuzz_settings, run_case
from tests.fuzz.mutations import DEEP, HUGE_INTS, WEIRD_STRINGS, Mutation, apply_edit, byte_damage, document_edits

pytestmark = pytest.mark.fuzz  # in the default run; pytest -m fuzz runs the fuzzer alone (see tests/fuzz/harness.py)

CELL_VALUES = ["", "0", "-1", "nan", "inf", "-inf", "1e309", "True", "None", "null", "3x0x32", "1x28", "\x00",
               *map(str, HUGE_INTS), *WEIRD_STRINGS]


@st.composite
def csv_damage(draw, data: bytes) -> tuple[bytes, Mutation]:
    """An edited CSV: one cell set to a strange value, a column dropped, duplicated or renamed, a junk
    line; or byte-level damage."""
    rows = list(csv.reader(io.StringIO(data.decode())))
    kind = draw(st.sampled_from(["cell", "cell", "drop-column", "duplicate-column", "rename-column", "junk-line",
                                 "no-rows", "bytes"]))
    column = draw(st.integers(0, len(rows[0]) - 1))
    if kind == "bytes":
        return draw(byte_damage(data))
    if kind == "cell":
        row = draw(st.integers(1, len(rows) - 1))
        value = draw(st.one_of(st.sampled_from(CELL_VALUES), st.text(max_size=10)))
        rows[row][column] = value
        mutation = Mutation("set", (rows[0][column], row), value)
    elif kind == "drop-column":
        rows = [r[:column] + r[column + 1:] for r in rows]
        mutation = Mutation(kind, (rows[0][column - 1] if column else "first",))
    elif kind == "duplicate-column":
        rows = [r + [r[column]] for r in rows]
        mutation = Mutation(kind, (rows[0][column],))
    elif kind == "rename-column":
        mutation = Mutation("rename", (rows[0][column],), draw(st.sampled_from(["", "x", rows[0][0], "Batch"])))
        rows[0][column] = mutation.value
    elif kind == "junk-line":
        rows.append(draw(st.lists(st.sampled_from(CELL_VALUES), max_size=4)))
        mutation = Mutation(kind)
    else:
        rows = rows[:1]
        mutation = Mutation(kind)
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(), mutation


@st.composite
def json_damage(draw, data: bytes) -> tuple[bytes, Mutation]:
    """An edited JSON document (a key dropped, set to any type, added), a whole document of the wrong type, a
    3,000-deep array, or byte-level damage."""
    doc = json.loads(data)
    kind = draw(st.sampled_from(["edit", "edit", "edit", "whole", "deep", "bytes"]))
    if kind == "bytes":
        return draw(byte_damage(data))
    if kind == "whole":
        value = draw(st.sampled_from([[], {}, None, 42, "results", [doc]]))
        return json.dumps(value).encode(), Mutation("set", (), value)
    if kind == "deep":
        return ("[" * DEEP + "]" * DEEP).encode(), Mutation("deep-nesting", fatal=True)
    edit = draw(document_edits(doc))
    return json.dumps(apply_edit(doc, edit), allow_nan=True).encode(), edit


def _readers(path: str, original: str) -> list[tuple[list[str], frozenset[int]]]:
    """The commands that read a results file or folder, with the exits an edited-but-readable one allows."""
    return [(["report", path, "--out", "{dir}/out"], frozenset({0, 2})),
            (["diff", original, path], frozenset({0, 1, 2})),
            (["diff", path, original, "--json"], frozenset({0, 1, 2}))]


@st.composite
def results_csv_cases(draw, real) -> Case:
    which = draw(st.sampled_from(["compare", "bench", "bench-env"]))
    if which == "compare":  # results.csv of a report folder, read as a CSV (its results.json beside it)
        data, mutation = draw(csv_damage(real.compare_csv.read_bytes()))
        copies, files, path = {"report": real.report_dir}, {"report/results.csv": data}, "{dir}/report/results.csv"
        original = str(real.compare_csv)
    else:
        copies = {"bench.csv": real.bench_csv, "bench.env.json": real.bench_csv.with_suffix(".env.json")}
        if which == "bench":
            data, mutation = draw(csv_damage(real.bench_csv.read_bytes()))
            files = {"bench.csv": data}
        else:
            data, mutation = draw(json_damage(real.bench_csv.with_suffix(".env.json").read_bytes()))
            files = {"bench.env.json": data}
        path, original = "{dir}/bench.csv", str(real.bench_csv)
    commands = _readers(path, original)
    if which != "compare":  # the same sweep, resumed in the mutated CSV: every cell is in it, nothing to measure
        commands.append(([*BENCH_ARGS, "--out", path, "--resume", "--db", "{dir}/store.db"], frozenset({0, 1, 2})))
    argv, exits = draw(st.sampled_from(commands))
    fatal = mutation.fatal or data.strip() == b""
    named = next(iter(files)) if fatal else None
    if fatal and which == "bench-env":  # the rows are intact: going on without the environment is fine, silently not
        return Case(argv, frozenset({0, 1, 2}) & exits, f"{which}: {mutation}", files=files, copies=copies,
                    names=(named,), warns=True)
    return Case(argv, frozenset({2}) if fatal else exits, f"{which}: {mutation}", files=files, copies=copies,
                names=(named,) if fatal else ())


@st.composite
def report_folder_cases(draw, real) -> Case:
    data, mutation = draw(json_damage((real.report_dir / "results.json").read_bytes()))
    commands = _readers("{dir}/report", str(real.report_dir))
    commands.append((["report", "{dir}/report", "--force"], frozenset({0, 2})))  # re-rendered in place
    commands.append(([*COMPARE_ARGS, "--out", "{dir}/report", "--resume", "--db", "{dir}/store.db"],
                     frozenset({0, 1, 2})))
    argv, exits = draw(st.sampled_from(commands))
    store = "store.db" if "--db" in argv else None
    return Case(argv, frozenset({2}) if mutation.fatal else exits, f"results.json: {mutation}",
                files={"report/results.json": data}, copies={"report": real.report_dir, "store.db": real.store},
                store=store, names=("results.json",) if mutation.fatal else ())


@fuzz_settings(10)
@given(data=st.data())
def test_mutated_results_csv(cli, tmp_path, real_files, data):
    run_case(cli, data.draw(results_csv_cases(real_files), label="case"), tmp_path)


@fuzz_settings(8)
@given(data=st.data())
def test_mutated_report_folders(cli, tmp_path, real_files, data):
    run_case(cli, data.draw(report_folder_cases(real_files), label="case"), tmp_path)
