"""``archbench diff`` on fixed synthetic samples (seeded, no torch, no measuring): what is called a
regression and what is not, the exit codes, environment differences, rows without raw samples, failed
and missing cells, exact count changes, the store path, and bad input through the real CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest

from archbench.diff.runs import RunData, diff_runs, load_run_data
from archbench.env.differences import env_differences, merge_sessions
from archbench.env.environment import append_environment
from archbench.report.csvfile import CsvFormat
from archbench.results.data import ModelInfo, ReportData
from archbench.results.jsonfile import JsonFormat
from archbench.rows import ModelStats, ResultRow, append_rows_csv
from archbench.study import adhoc_study
from archbench.timing.stats import Measurement

ENV = {"archbench": "0.2.0", "python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1", "cuda": None,
       "devices": {"cpu": "Test CPU 9000"}, "cpu_model": "Test CPU 9000", "threads": 2, "date": "2026-01-01T09:00:00+00:00"}


def samples(seed: int, median_ms: float, noise: float, n: int = 20) -> tuple[float, ...]:
    """``n`` times around ``median_ms`` with a log-normal spread of ``noise`` (0.01: about 1%)."""
    rng = random.Random(seed)
    return tuple(median_ms * math.exp(rng.gauss(0, noise)) for _ in range(n))


def changed(times: tuple[float, ...], factor: float, seed: int = 0) -> tuple[float, ...]:
    """The same spread in another order, ``factor`` times longer: every pairwise ratio new/base has a
    mirror image around ``factor``, so the Hodges–Lehmann estimate is exactly ``factor`` — what a
    synthetic change means, without relying on a lucky draw."""
    shuffled = list(times)
    random.Random(seed).shuffle(shuffled)
    return tuple(factor * t for t in shuffled)


def row(model: str, times: tuple[float, ...], batch: int = 1, flops: float = 2e9) -> ResultRow:
    m = Measurement(times, (), "precision", 1.0, 0.03)
    low, high = m.ci_ms
    return ResultRow(model=model, device="cpu", mode="infer", batch=batch, input="3x32x32", dtype="fp32", threads=2,
                     n_samples=m.n_samples, median_ms=m.median_ms, iqr_ms=m.iqr_ms, ci_low_ms=low, ci_high_ms=high,
                     ci_coverage=m.ci_coverage, min_ms=m.min_ms, flops_per_step=flops, samples_ms=times)


def failed(model: str, status: str = "oom", batch: int = 1) -> ResultRow:
    return ResultRow(model=model, device="cpu", mode="infer", batch=batch, input="3x32x32", dtype="fp32", threads=2,
                     status=status, error=f"out of memory on cpu at batch {batch}")


def write_report_dir(folder: Path, rows, env=ENV, stats=()) -> Path:
    """What `archbench compare` leaves: results.json (rows with raw samples, environment, counts) and results.csv."""
    models = tuple(dict.fromkeys(r.model for r in rows))
    data = ReportData(study=adhoc_study(models), rows=tuple(rows), models=tuple(ModelInfo(m, "", "", "3x32x32") for m in models),
                      stats=tuple(stats), environments=(env,))
    folder.mkdir(parents=True, exist_ok=True)
    JsonFormat().write(data, folder)
    CsvFormat().write(data, folder)
    return folder


def stats(model: str, params: int, macs: int) -> ModelStats:
    return ModelStats(model, "3x32x32", 1, "cpu", "fp32", params, params, 0, 4 * params, macs, 2 * macs, 4 * macs, 1 << 20)


# A 10% slowdown with 1% noise, a 10% change in 30% noise, a 2% change with 1% noise (20 samples a side).
BASE_ROWS = [row("steady", samples(1, 100.0, 0.01)), row("jittery", samples(2, 100.0, 0.30)),
             row("tweaked", samples(3, 50.0, 0.01))]
NEW_ROWS = [row(r.model, changed(r.samples_ms, factor)) for r, factor in zip(BASE_ROWS, (1.10, 1.10, 1.02))]


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    return write_report_dir(tmp_path / "base", BASE_ROWS), write_report_dir(tmp_path / "new", NEW_ROWS)


def verdicts(result) -> dict[str, str]:
    return {c.key.model: c.verdict for c in result.cells}


# ------------------------------------------------------------------------------------------ verdicts


def test_verdicts_on_synthetic_samples():
    result = diff_runs(RunData("base", BASE_ROWS, ENV), RunData("new", NEW_ROWS, ENV))
    assert verdicts(result) == {"steady": "slower", "jittery": "noisy", "tweaked": "unchanged"}
    steady, jittery, tweaked = result.cells
    assert steady.ratio == pytest.approx(1.10) and steady.low > 1.05 and steady.p_holm < 1e-6
    assert steady.method == "mann-whitney" and (steady.n_base, steady.n_new) == (20, 20)
    assert jittery.ratio == pytest.approx(1.10) and jittery.low < 1.0 and jittery.high > 1.2  # cannot rule out no change
    assert jittery.p_holm > 0.05
    assert tweaked.ratio == pytest.approx(1.02) and 0.95 <= tweaked.low and tweaked.high <= 1.05
    assert tweaked.p < 0.05  # significant, and still "unchanged": below the minimum effect
    assert result.outcome == "regressed" and [c.key.model for c in result.slower] == ["steady"]


def test_a_speedup_is_faster_and_not_a_regression():
    times = samples(1, 100.0, 0.01)
    result = diff_runs(RunData("base", [row("m", times)]), RunData("new", [row("m", changed(times, 0.8))]))
    assert verdicts(result) == {"m": "faster"} and result.outcome == "no regression"
    assert result.cells[0].high < 0.95


def test_holm_correction_spans_the_cells():
    """Five samples a side, completely separated and 20% slower: exact p = 2/252 = 0.0079 per cell. One
    such cell is called slower; in seven, Holm multiplies the smallest p by 7 (0.056 >= 0.05): noisy."""
    base_times, new_times = (100.0, 101.0, 102.0, 103.0, 104.0), (120.0, 121.0, 122.0, 123.0, 124.0)
    one = diff_runs(RunData("b", [row("m", base_times)]), RunData("n", [row("m", new_times)]))
    assert one.cells[0].p == pytest.approx(2 / 252) and one.cells[0].verdict == "slower"
    seven = diff_runs(RunData("b", [row("m", base_times, batch=k) for k in range(1, 8)]),
                      RunData("n", [row("m", new_times, batch=k) for k in range(1, 8)]))
    assert [c.p_holm for c in seven.cells] == pytest.approx([7 * 2 / 252] * 7)
    assert {c.verdict for c in seven.cells} == {"noisy"} and seven.outcome == "no regression"


def test_min_effect_changes_what_is_called(runs, cli):
    result = cli("diff", *runs, "--min-effect", "0.15", "--json")
    assert result.exit_code == 0, result.output
    cells = {c["model"]: c["verdict"] for c in json.loads(result.stdout)["cells"]}
    assert cells["steady"] == "unchanged"  # a 10% slowdown is within ±15%


# ------------------------------------------------------------------------------------------ the CLI


def test_cli_regression_exits_1_with_a_table(runs, cli):
    result = cli("diff", *runs)
    assert result.exit_code == 1, result.output
    assert cli("diff", *runs, "--fail-on-env-change").exit_code == 1  # comparable: the regression decides
    lines = result.stdout.splitlines()
    steady = next(line for line in lines if line.strip().startswith("steady"))
    assert "▲ slower" in steady and "+10." in steady
    assert "= unchanged" in next(line for line in lines if line.strip().startswith("tweaked"))
    assert "? noisy" in next(line for line in lines if line.strip().startswith("jittery"))
    assert "regressed: 1 cell(s) slower" in result.stderr


def test_cli_json(runs, cli):
    result = cli("diff", *runs, "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["outcome"] == "regressed" and payload["comparable"] is True and payload["fully_compared"] is True
    assert payload["verdicts"] == {"slower": 1, "faster": 0, "unchanged": 1, "noisy": 1, "not comparable": 0}
    assert {c["reason"] for c in payload["cells"]} == {""}  # quiet runs: the statistics decide every cell
    steady = next(c for c in payload["cells"] if c["model"] == "steady")
    assert steady["batch"] == 1 and steady["method"] == "mann-whitney" and steady["low"] > 1.05


def test_cli_markdown_is_a_pull_request_comment(runs, cli):
    result = cli("diff", *runs, "--markdown")
    assert result.exit_code == 1
    text = result.stdout
    assert text.startswith("### archbench diff:") and "**regressed: ▲ 1 slower · ▼ 0 faster" in text
    table = [line for line in text.splitlines() if line.startswith("| `")]
    assert table[0].startswith("| `steady infer cpu fp32 b1 3x32x32 threads 2` |") and table[0].endswith("| ▲ slower |")
    assert [line.rsplit("|", 2)[1].strip() for line in table] == ["▲ slower", "? noisy", "= unchanged"]
    assert "Mann–Whitney U" in text and "±5%" in text
    assert "Not judged" not in text and "Set aside" not in text and "not comparable" not in text


def test_cli_no_regression_exits_0(tmp_path, cli):
    base = write_report_dir(tmp_path / "b", BASE_ROWS[1:])
    new = write_report_dir(tmp_path / "n", NEW_ROWS[1:])
    result = cli("diff", base, new)
    assert result.exit_code == 0, result.output
    assert "no regression: ▲ 0 slower" in result.stdout
    assert "not judged" not in result.stdout and "warning" not in result.stderr
    assert cli("diff", base, new, "--fail-on-env-change").exit_code == 0  # quiet runs: the flag changes nothing


def test_a_results_csv_with_its_json_keeps_the_raw_samples(runs, cli):
    base, new = runs
    result = cli("diff", base / "results.csv", new / "results.csv", "--json")
    assert result.exit_code == 1
    assert {c["method"] for c in json.loads(result.stdout)["cells"]} == {"mann-whitney"}


# ------------------------------------------------------------------------------------- environment


def test_environment_change_is_not_comparable_exit_0_unless_allowed(tmp_path, cli):
    """Not comparable is not a regression: exit 0 and a warning. With --allow-env-change the slowdown counts."""
    base = write_report_dir(tmp_path / "b", BASE_ROWS)
    new = write_report_dir(tmp_path / "n", NEW_ROWS, env={**ENV, "torch": "2.15.0", "threads": 4, "date": "later"})
    result = cli("diff", base, new)
    assert result.exit_code == 0, result.output
    assert result.stdout.index("Environment differences: the runs are not comparable") < result.stdout.index("steady")
    assert "torch" in result.stdout and "2.15.0" in result.stdout and "threads" in result.stdout
    assert "not comparable" in result.stderr and "--allow-env-change" in result.stderr
    assert "▲ slower" in result.stdout  # the cells are still shown
    payload = json.loads(cli("diff", base, new, "--json").stdout)
    assert payload["outcome"] == "not comparable"
    assert payload["environment_differences"] == [{"name": "torch", "base": "2.14.1", "new": "2.15.0"},
                                                  {"name": "threads", "base": "2", "new": "4"}]
    allowed = cli("diff", base, new, "--allow-env-change")
    assert allowed.exit_code == 1 and "compared anyway" in allowed.stdout
    strict = cli("diff", base, new, "--fail-on-env-change")
    assert strict.exit_code == 3 and "not comparable" in strict.stderr and "(exit 3)" in " ".join(strict.stderr.split())
    assert cli("diff", base, new, "--fail-on-env-change", "--allow-env-change").exit_code == 1


def test_environment_fields_that_do_not_matter_or_only_one_run_has():
    base = {**ENV, "devices": {"cpu": "Test CPU 9000"}}
    new = {**ENV, "date": "2027-01-01", "python": "3.12.0", "archbench": "0.3.0", "git_commit": "abc",
           "devices": {"cpu": "Test CPU 9000", "cuda": "NVIDIA H100"}}
    assert env_differences(base, new) == ()
    moved = env_differences(base, {**ENV, "devices": {"cpu": "Other CPU"}, "cpu_model": "Other CPU"})
    assert [(d.name, d.new) for d in moved] == [("cpu_model", "Other CPU"), ("device cpu", "Other CPU")]


def test_a_resumed_run_with_two_environments_differs_from_either():
    merged = merge_sessions([ENV, {**ENV, "torch": "2.15.0", "date": "later"}])
    assert merged["threads"] == 2 and merged["torch"] == '"2.14.1" | "2.15.0"'
    assert [d.name for d in env_differences(ENV, merged)] == ["torch"]


# ------------------------------------------------------------------------ rows, failures, counts


def test_bench_csv_without_samples_falls_back_to_the_rows_cis(tmp_path, cli):
    base_csv, new_csv = tmp_path / "base.csv", tmp_path / "new.csv"
    append_rows_csv(base_csv, BASE_ROWS)
    append_rows_csv(new_csv, NEW_ROWS)
    for path in (base_csv, new_csv):
        append_environment(path, ENV)
    result = cli("diff", base_csv, new_csv, "--json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    steady = next(c for c in payload["cells"] if c["model"] == "steady")
    base_row, new_row = BASE_ROWS[0], NEW_ROWS[0]
    assert steady["method"] == "row CIs" and steady["p"] is None and steady["p_holm"] is None
    assert steady["ratio"] == pytest.approx(new_row.median_ms / base_row.median_ms)
    assert (steady["low"], steady["high"]) == pytest.approx((new_row.ci_low_ms / base_row.ci_high_ms,
                                                             new_row.ci_high_ms / base_row.ci_low_ms))
    assert steady["coverage"] == pytest.approx(base_row.ci_coverage * new_row.ci_coverage)
    assert steady["verdict"] == "slower"
    assert any("no usable raw samples" in note for note in payload["notes"])
    assert payload["environment_differences"] == []


def test_a_bench_csv_without_its_environment_says_so(tmp_path):
    path = tmp_path / "bench.csv"
    append_rows_csv(path, BASE_ROWS)
    run = load_run_data(str(path))
    assert run.env == {} and run.rows[0].samples_ms == ()
    result = diff_runs(run, run)
    assert any("no recorded environment" in note for note in result.notes)


def test_an_unreadable_environment_file_is_a_warning_naming_it(tmp_path, cli):
    """Found by the fuzzer: a bench CSV's env.json nested 3,000 deep was silently dropped by diff."""
    base_csv, new_csv = tmp_path / "base.csv", tmp_path / "new.csv"
    append_rows_csv(base_csv, BASE_ROWS)
    append_rows_csv(new_csv, BASE_ROWS)
    (tmp_path / "new.env.json").write_text("[" * 3000 + "]" * 3000)
    for argv in (("diff", base_csv, new_csv), ("diff", base_csv, new_csv, "--json")):
        result = cli(*argv)
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        said = " ".join(result.stderr.split())
        assert f"warning: {tmp_path / 'new.env.json'}: nested too deeply" in said, said
        assert "without their environment" in said  # the rows are still read


def test_failed_only_in_one_and_count_changes(tmp_path, cli):
    base_rows = [row("a", samples(1, 10.0, 0.01)), row("b", samples(2, 10.0, 0.01)), failed("c"),
                 row("gone", samples(3, 10.0, 0.01))]
    new_rows = [row("a", changed(base_rows[0].samples_ms, 1.0), flops=3e9), failed("b"), failed("c", "error"),
                row("added", samples(4, 10.0, 0.01))]
    base = write_report_dir(tmp_path / "b", base_rows, stats=[stats("a", 1_000_000, 5_000_000)])
    new = write_report_dir(tmp_path / "n", new_rows, stats=[stats("a", 1_000_001, 5_000_000)])
    result = diff_runs(load_run_data(str(base)), load_run_data(str(new)))
    assert [c.key.model for c in result.cells] == ["a"] and verdicts(result) == {"a": "unchanged"}
    assert [(f.key.model, f.base_status, f.new_status, f.newly_failed) for f in result.failed] == [
        ("b", "ok", "oom", True), ("c", "oom", "error", False)]
    assert [k.model for k in result.only_in_base] == ["gone"] and [k.model for k in result.only_in_new] == ["added"]
    assert [(c.what, c.name, c.base, c.new) for c in result.count_changes] == [
        ("a infer cpu fp32 b1 3x32x32 threads 2", "flops_per_step", 2e9, 3e9), ("a 3x32x32", "params", 1_000_000, 1_000_001)]
    assert result.outcome == "regressed"  # b ran in the base and runs out of memory now

    shown = cli("diff", base, new, "--markdown")
    assert shown.exit_code == 1
    assert "- `b infer cpu fp32 b1 3x32x32 threads 2`: ok → oom: out of memory on cpu at batch 1 — ✗ regression" in shown.stdout
    assert "**Only in the base** (1): `gone" in shown.stdout and "**Only in the new run** (1): `added" in shown.stdout
    assert "| a 3x32x32 | params | 1,000,000 | 1,000,001 |" in shown.stdout


# ----------------------------------------------------------------------------------------- the store


def test_runs_from_the_results_store(tmp_path, cli):
    from archbench.results.store import Store

    db = tmp_path / "archbench.db"
    with Store.open(db) as store:
        for rows in (BASE_ROWS, NEW_ROWS):
            run_id = store.begin_run("archbench bench steady jittery tweaked", env=ENV)
            for r in rows:
                store.add_cell(run_id, r)
            store.finish_run(run_id)
    result = cli("diff", "latest~1", "latest", "--db", db, "--json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert (payload["base"], payload["new"]) == ("run 1", "run 2")
    assert {c["model"]: c["verdict"] for c in payload["cells"]} == {"steady": "slower", "jittery": "noisy",
                                                                   "tweaked": "unchanged"}
    assert cli("diff", "2", "2", "--db", db).exit_code == 0
    unknown = cli("diff", "1", "7", "--db", db)
    assert unknown.exit_code == 2 and "no run 7" in unknown.stderr and "Traceback" not in unknown.output


# --------------------------------------------------------------------------------------- bad input


def test_bad_input_is_exit_2_with_a_message(runs, tmp_path, cli):
    base, new = runs
    other = write_report_dir(tmp_path / "other", [row("elsewhere", samples(5, 1.0, 0.01))])
    not_ours = tmp_path / "people.csv"
    not_ours.write_text("name,age\nada,36\n")
    cases = {
        ("diff", base, other): "no cell in common",
        ("diff", base, not_ours): "not an archbench results CSV",
        ("diff", tmp_path / "missing.csv", new): "missing.csv' is neither a results CSV",
        ("diff", tmp_path, new): "folder without results.json",
        ("diff", "latest", new, "--db", tmp_path / "none.db"): "no results store at",
        ("diff", base, new, "--markdown", "--json"): "--markdown and --json",
        ("diff", base, new, "--min-effect", "2"): "--min-effect '2' is not a fraction",
        ("diff", base, new, "--db", tmp_path): "is a folder",
    }
    for argv, message in cases.items():
        result = cli(*argv)
        assert result.exit_code == 2, (argv, result.output)
        assert message in result.stderr and "Traceback" not in result.output, (argv, result.stderr)


# ------------------------------------------------------------------- load, noise, short intervals


def loaded(r: ResultRow, load_ratio: float = 40.9) -> ResultRow:
    """``r`` as a sweep writes a cell measured while the machine was busy (archbench.timing.load.with_load)."""
    return dataclasses.replace(r, under_load=True, load_ratio=load_ratio)


def store_runs(db: Path, *runs) -> None:
    """Each list of rows as one finished run of the results store, as `bench` records them."""
    from archbench.results.store import Store

    with Store.open(db) as store:
        for rows in runs:
            run_id = store.begin_run("archbench bench", env=ENV)
            for r in rows:
                store.add_cell(run_id, r)
            store.finish_run(run_id)


def test_a_cell_measured_under_load_is_not_comparable_never_faster(tmp_path, cli):
    """Issue 19: two identical runs, the first measured while the machine was busy (load ratio 40.9): the
    cell looks 98.9% faster with p < 0.001. It is not comparable, exit 0; exit 3 with --fail-on-env-change,
    checked through the real `archbench` process."""
    from tests.conftest import run_subprocess

    quiet = samples(1, 1.0, 0.01)
    db = tmp_path / "archbench.db"
    store_runs(db, [loaded(row("m", changed(quiet, 90.0)))], [row("m", quiet)])
    result = cli("diff", "latest~1", "latest", "--db", db)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("m infer"))
    assert "≠ not comparable (measured under load)" in line and "-98.9%" in line and "▼" not in line
    text, warning = " ".join(result.stdout.split()), " ".join(result.stderr.split())  # as rich wrapped them
    assert "not judged: m infer cpu fp32 b1 3x32x32 threads 2: ≠ not comparable (measured under load): measured " \
           "under load in the base (the calibration kernel ran 40.9× slower around it)" in text
    assert "not comparable: ▲ 0 slower · ▼ 0 faster · = 0 unchanged · ? 0 noisy · ≠ 1 not comparable" in text
    assert "1 of 1 cell(s) were measured under load" in warning and "--fail-on-env-change" in warning

    payload = json.loads(cli("diff", "latest~1", "latest", "--db", db, "--json").stdout)
    (cell,) = payload["cells"]
    assert cell["verdict"] == "not comparable" and cell["p"] < 0.001 and cell["p_holm"] is None
    assert cell["reason"] == "measured under load in the base (the calibration kernel ran 40.9× slower around it)"
    assert payload["outcome"] == "not comparable" and payload["comparable"] is True  # the environments match
    assert payload["fully_compared"] is False
    assert payload["verdicts"]["not comparable"] == 1 and payload["verdicts"]["faster"] == 0

    markdown = cli("diff", "latest~1", "latest", "--db", db, "--markdown").stdout
    assert "| ≠ not comparable (measured under load) |" in markdown and "**Not judged** (1)" in markdown
    assert "- `m infer cpu fp32 b1 3x32x32 threads 2`: ≠ not comparable (measured under load) — measured under " \
           "load in the base (the calibration kernel ran 40.9× slower around it)" in markdown
    assert "never a regression: ≠ not comparable, measured under load in either run" in markdown

    assert run_subprocess("diff", "latest~1", "latest", "--db", db).exit_code == 0
    strict = run_subprocess("diff", "latest~1", "latest", "--db", db, "--fail-on-env-change")
    assert strict.exit_code == 3 and "(exit 3)" in " ".join(strict.stderr.split()) and "Traceback" not in strict.output


def test_load_on_some_cells_sets_them_aside_and_leaves_the_rest_judged():
    """A slower cell under load in the new run, and one that crowded cores (ratio below the threshold) in
    both: not comparable, out of the Holm family, never a regression; the quiet cells are judged as if the
    loaded ones were not there. Exit 3 needs --fail-on-env-change; a real regression is still exit 1."""
    from archbench.cli.diff import exit_code

    quiet_base, quiet_new = BASE_ROWS[1:], NEW_ROWS[1:]  # jittery (noisy), tweaked (unchanged)
    hot_base, hot_new = row("hot", samples(7, 10.0, 0.01)), loaded(row("hot", changed(samples(7, 10.0, 0.01), 3.0)), 2.5)
    busy = [loaded(row("busy", samples(8, 10.0, 0.01)), 1.1), loaded(row("busy", samples(9, 10.0, 0.01)), 1.2)]
    result = diff_runs(RunData("b", [*quiet_base, hot_base, busy[0]], ENV), RunData("n", [*quiet_new, hot_new, busy[1]], ENV))
    alone = diff_runs(RunData("b", quiet_base, ENV), RunData("n", quiet_new, ENV))
    assert verdicts(result) == {"jittery": "noisy", "tweaked": "unchanged", "hot": "not comparable",
                                "busy": "not comparable"}
    assert [c.p_holm for c in result.cells[:2]] == [c.p_holm for c in alone.cells]  # the family is the quiet cells
    hot, busy_cell = result.cells[2:]
    assert hot.ratio == pytest.approx(3.0) and hot.reason == ("measured under load in the new run (the calibration "
                                                              "kernel ran 2.5× slower around it)")
    assert busy_cell.reason == ("measured under load in both runs (base: other processes kept the cores it needed "
                                "busy; new run: other processes kept the cores it needed busy)")
    assert result.outcome == "no regression" and not result.fully_compared
    assert (exit_code(result, False), exit_code(result, True)) == (0, 3)

    regressed = diff_runs(RunData("b", [*BASE_ROWS, hot_base], ENV), RunData("n", [*NEW_ROWS, hot_new], ENV))
    assert regressed.outcome == "regressed" and [c.key.model for c in regressed.slower] == ["steady"]
    assert (exit_code(regressed, False), exit_code(regressed, True)) == (1, 1)


def test_a_cell_flagged_noisy_is_noisy_not_slower(tmp_path, cli):
    """`steady` is 10% slower, significant and beyond ±5%: slower — unless either run flagged it noisy
    (IQR above 10% of the median). Noisy is no environment change: exit 0 with --fail-on-env-change too."""
    base_rows = [dataclasses.replace(BASE_ROWS[0], noisy=True, iqr_ms=23.0)]
    base = write_report_dir(tmp_path / "b", base_rows)
    new = write_report_dir(tmp_path / "n", NEW_ROWS[:1])
    result = cli("diff", base, new, "--json", "--fail-on-env-change")
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(result.stdout)["cells"]
    assert cell["verdict"] == "noisy" and cell["low"] > 1.05 and cell["p"] < 1e-6 and cell["p_holm"] is None
    assert cell["reason"] == f"noisy in the base (IQR {23.0 / base_rows[0].median_ms:.0%} of the median)"
    assert "**Not judged** (1)" in cli("diff", base, new, "--markdown").stdout


def test_a_ci_covering_less_than_95_percent_is_noisy(tmp_path, cli):
    """Raw samples: 3 against 3 equal times give the full range of the ratios, a 90% interval, within
    ±5% — "unchanged" before, noisy now. Rows without samples: 5 samples a side (each median's CI 93.75%),
    20% slower — "slower" before, noisy now (exit 0)."""
    few = diff_runs(RunData("b", [row("m", (10.0, 10.01, 10.02))], ENV), RunData("n", [row("m", (10.0, 10.01, 10.02))], ENV))
    (cell,) = few.cells
    assert cell.verdict == "noisy" and cell.coverage == pytest.approx(0.9) and 0.95 < cell.low < cell.high < 1.05
    assert cell.reason == "the CI of the ratio covers only 90% < 95% (too few samples: 3 and 3)"

    base_csv, new_csv = tmp_path / "base.csv", tmp_path / "new.csv"
    five = (100.0, 101.0, 102.0, 103.0, 104.0)
    append_rows_csv(base_csv, [row("m", five)])
    append_rows_csv(new_csv, [row("m", tuple(1.2 * t for t in five))])
    for path in (base_csv, new_csv):
        append_environment(path, ENV)
    result = cli("diff", base_csv, new_csv, "--json")
    assert result.exit_code == 0, result.output
    (cell,) = json.loads(result.stdout)["cells"]
    assert cell["method"] == "row CIs" and cell["low"] > 1.05 and cell["verdict"] == "noisy"
    assert cell["reason"] == ("its median's CI covers less than the nominal in both runs (base: 93.7%, 5 samples; "
                              "new run: 93.7%, 5 samples)")
