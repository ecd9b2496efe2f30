"""Files and runs (issues 8 and 15): output locations checked before anything is measured, one run per
CSV or report folder, finished reports never replaced by another study's run, torn and corrupt CSV
lines, resume that refuses other options or models, exit 1 when every cell failed, Ctrl-C while a
compare counts, one thread count, `check --update`, `--set` blamed for its own value, and README examples.

Everything runs the real CLI (in process, or as a subprocess where processes, locks and signals matter)
on mnist-cnn with tiny budgets."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from archbench.outputs import DIR_LOCK_NAME, lock_path_for_file, owned_file
from archbench.rows import CSV_COLUMNS, read_results_csv, read_rows_csv
from tests.conftest import REPO, run_subprocess

FAST = ("--max-time", "0.1", "--precision", "0.5")
BENCH = ("bench", "mnist-cnn", "--mode", "infer", *FAST)
COMPARE = ("compare", "mnist-cnn", "--batch", "1", "--mode", "infer", *FAST)


def no_traceback(result) -> bool:
    return "Traceback" not in result.output


# ------------------------------------------------------------------------------- output locations


def test_bench_out_under_a_regular_file_fails_before_measuring(cli, tmp_path):
    (tmp_path / "afile").write_text("")
    result = cli(*BENCH, "--out", tmp_path / "afile" / "x.csv")
    assert result.exit_code == 2 and no_traceback(result)
    assert f"'{tmp_path / 'afile'}' is a file, not a folder" in result.stderr
    assert "cell(s) measured" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("resume", [False, True])
def test_bench_out_that_is_a_folder(cli, tmp_path, resume):
    result = cli(*BENCH, "--out", tmp_path, *(["--resume"] if resume else []))
    assert result.exit_code == 2 and no_traceback(result)
    assert f"'{tmp_path}': it is a folder; give a file name" in result.stderr


def test_compare_and_report_out_that_is_a_file(cli, tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("mine")
    compare = cli(*COMPARE, "--out", afile)
    report = cli("report", REPO / "docs" / "example-report" / "results.csv", "--out", afile)
    nested = cli(*COMPARE, "--out", afile / "report")
    for result in (compare, report, nested):
        assert result.exit_code == 2 and no_traceback(result), result.output
        assert f"'{afile}'" in result.stderr and ("it is a file, not a folder" in result.stderr
                                                  or "is a file, not a folder" in result.stderr)
    assert afile.read_text() == "mine"


def _read_only_run(folder: Path, cwd: Path, *args: str):
    """``python -m archbench ARGS`` in ``cwd`` with ``folder`` bind-mounted read-only (a real read-only
    file system, which root cannot write either), in a private mount namespace."""
    probe = subprocess.run(["unshare", "--mount", "--", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("cannot create a mount namespace here (unshare --mount) for a read-only folder")
    script = 'mount --bind -o ro "$1" "$1" || exit 99; cd "$2" && shift 2 && exec "$@"'
    proc = subprocess.run(["unshare", "--mount", "--", "sh", "-c", script, "sh", str(folder), str(cwd),
                           sys.executable, "-m", "archbench", *args], capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode == 99:
        pytest.skip("cannot bind-mount a folder read-only here")
    return proc


def test_bench_in_a_read_only_working_directory(tmp_path):
    proc = _read_only_run(tmp_path, tmp_path, *BENCH)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "read-only file system" in proc.stderr and "pass --out FILE.csv" in proc.stderr
    assert "cell(s) measured" not in proc.stderr


def test_compare_and_report_into_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    compare = _read_only_run(folder, tmp_path, *COMPARE, "--out", str(folder / "r"))
    assert compare.returncode == 2 and "read-only file system" in compare.stderr, compare.stderr
    csv_copy = folder / "results.csv"
    for name in ("results.csv", "results.json"):
        (folder / name).write_bytes((REPO / "docs" / "example-report" / name).read_bytes())
    report = _read_only_run(folder, tmp_path, "report", str(csv_copy))  # re-render in place
    assert report.returncode == 2 and "Traceback" not in report.stderr, report.stderr
    assert f"'{folder}'" in report.stderr and "read-only file system" in report.stderr


# ------------------------------------------------------------------------------------ one run at a time


def test_a_bench_csv_in_use_is_refused(cli, tmp_path):
    out = tmp_path / "r.csv"
    with owned_file(out):
        result = cli(*BENCH, "--out", out)
        assert lock_path_for_file(out).exists()
    assert result.exit_code == 2 and no_traceback(result)
    assert f"'{out}' is in use by archbench (PID {os.getpid()})" in result.stderr
    assert not out.exists() and not lock_path_for_file(out).exists()


def _wait_for_lock(lock: Path, proc: subprocess.Popen) -> None:
    while not (lock.exists() and lock.read_text().strip() == str(proc.pid)):
        assert proc.poll() is None, proc.communicate()
        subprocess.run(["sleep", "0.05"], check=True)  # polling for the other process, not timing anything


@pytest.mark.slow
def test_two_compares_into_one_folder(tmp_path):
    """Run B starts while run A holds the folder (A is stopped with SIGSTOP right after taking it, so the
    overlap does not depend on speed): B refuses before counting or measuring; A's files agree."""
    out = tmp_path / "shared"
    argv = ["compare", "mnist-cnn", "resnet-cifar-n5", "--batch", "1", "--mode", "infer", "--max-time", "0.2",
            "--precision", "0.5", "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "archbench", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        _wait_for_lock(out / DIR_LOCK_NAME, first)
        first.send_signal(signal.SIGSTOP)
        before = sorted(p.name for p in out.iterdir())
        second = run_subprocess(*argv, cwd=tmp_path)
        assert sorted(p.name for p in out.iterdir()) == before  # B wrote nothing
    finally:
        first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=300)
    assert second.exit_code == 2 and "Traceback" not in second.stderr
    assert f"'{out}' is in use by archbench (PID {first.pid})" in second.stderr
    assert first.returncode == 0, stderr

    rows = read_rows_csv(out / "results.csv")
    stored = json.loads((out / "results.json").read_text())
    assert [(r.model, r.median_ms) for r in rows] == [(r["model"], r["median_ms"]) for r in stored["rows"]]
    again = run_subprocess("report", out / "results.csv", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again" / "report.md").read_text() == (out / "report.md").read_text()
    assert not (out / DIR_LOCK_NAME).exists()


# ----------------------------------------------------------------------------- finished reports owned


@pytest.mark.slow
def test_adhoc_compare_of_the_same_name_with_another_grid_refuses(cli, tmp_path):
    out = tmp_path / "r"
    assert cli(*COMPARE, "--out", out).exit_code == 0
    report = (out / "report.md").read_text()
    other = cli("compare", "mnist-cnn", "--batch", "2", "--mode", "infer", *FAST, "--out", out)
    assert other.exit_code == 2 and no_traceback(other)
    assert "holds a report of study 'mnist-cnn' that measured other cells (grid.batches [1] -> [2])" in other.stderr
    assert (out / "report.md").read_text() == report
    longer = cli("compare", "mnist-cnn", "--batch", "1", "--mode", "infer", "--max-time", "0.15", "--precision", "0.5",
                 "--out", out)
    assert longer.exit_code == 0, longer.output  # the same cells with another time budget: the same study
    forced = cli("compare", "mnist-cnn", "--batch", "2", "--mode", "infer", *FAST, "--out", out, "--force")
    assert forced.exit_code == 0, forced.output
    assert [r.batch for r in read_rows_csv(out / "results.csv")] == [2]


@pytest.mark.slow
def test_report_out_follows_the_folder_rules_of_compare(cli, tmp_path):
    example = REPO / "docs" / "example-report" / "results.csv"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my own notes")
    refused = cli("report", example, "--out", mine)
    assert refused.exit_code == 2 and "which is not an archbench report" in refused.stderr
    assert (mine / "report.md").read_text() == "my own notes"

    other = tmp_path / "other"
    assert cli(*COMPARE, "--out", other).exit_code == 0
    taken = cli("report", example, "--out", other)
    assert taken.exit_code == 2 and "holds the report of study 'mnist-cnn', not 'default'" in taken.stderr
    forced = cli("report", example, "--out", mine, "--force")
    assert forced.exit_code == 0, forced.output
    assert (mine / "report.md").read_text() != "my own notes" and (mine / "results.json").exists()


# ------------------------------------------------------------------------------- torn and corrupt lines


def _tear_last_line(path: Path) -> str:
    """Cut the last row in the middle (what a crash while appending leaves); returns the removed tail."""
    text = path.read_text()
    cut = text.rstrip("\r\n").rfind(",", 0, len(text) - 20)
    path.write_text(text[:cut])
    return text[cut:]


@pytest.mark.slow
def test_bench_resume_skips_a_torn_last_line_and_measures_that_cell_again(cli, tmp_path):
    out = tmp_path / "r.csv"
    assert cli(*BENCH, "--batch", "1,2", "--threads", "1", "--out", out).exit_code == 0
    _tear_last_line(out)
    result = cli(*BENCH, "--batch", "1,2", "--threads", "1", "--out", out, "--resume")
    assert result.exit_code == 0 and no_traceback(result), result.output
    assert f"warning: {out}:3: skipped an unfinished last line" in " ".join(result.stderr.split())
    assert [(r.batch, r.status) for r in read_rows_csv(out)] == [(1, "ok"), (2, "ok")]
    assert read_results_csv(out).warnings == ()  # the torn bytes are gone, not glued to the new row


@pytest.mark.slow
def test_a_garbage_line_is_refused_with_file_and_line(cli, tmp_path):
    out = tmp_path / "r.csv"
    assert cli(*BENCH, "--threads", "1", "--out", out).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + "garbage,line\n" + "".join(lines[1:]))
    result = cli(*BENCH, "--threads", "1", "--out", out, "--resume")
    assert result.exit_code == 2 and no_traceback(result)
    assert f"{out}:2: not a valid results row" in result.stderr


@pytest.mark.slow
def test_report_and_compare_resume_with_a_torn_line(cli, tmp_path):
    from archbench.runs.compare import PARTIAL_CSV, run_compare
    from archbench.study import StudyOptions, adhoc_study
    from archbench.timing.options import MeasureOptions

    class StopAfterOne:
        def cell_finished(self, *args):
            raise KeyboardInterrupt

    out = tmp_path / "r"
    study = adhoc_study(["mnist-cnn"], batches=[1, 2], modes=["infer"], options=StudyOptions(MeasureOptions(max_time_s=0.1, precision=0.5)))
    assert run_compare(study, out, command="c", listener=StopAfterOne()).interrupted
    with (out / PARTIAL_CSV).open("a") as fh:
        fh.write("mnist-cnn,cpu,infer,2,1x2")  # a second row cut off
    resumed = cli("compare", "mnist-cnn", "--batch", "1,2", "--mode", "infer", "--max-time", "0.1", "--precision", "0.5",
                  "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"{out / PARTIAL_CSV}:3: skipped an unfinished last line" in " ".join(resumed.stderr.split())
    assert [r.batch for r in read_rows_csv(out / "results.csv")] == [1, 2]

    results = out / "results.csv"
    full = results.read_text()
    _tear_last_line(results)
    report = cli("report", results)
    assert report.exit_code == 0, report.output
    assert f"{results}:3: skipped an unfinished last line" in " ".join(report.stderr.split())
    results.write_text(full.replace("mnist-cnn,cpu,infer,1,", "mnist-cnn,cpu,infer,one,", 1))
    broken = cli("report", results)
    assert broken.exit_code == 2 and f"{results}:2: not a valid results row: column 'batch'" in broken.stderr


# ------------------------------------------------------------------------------ resume and options


@pytest.mark.slow
def test_bench_resume_refuses_other_options_and_other_models(cli, tmp_path):
    out = tmp_path / "r.csv"
    assert cli(*BENCH, "--threads", "1", "--out", out).exit_code == 0
    [row] = read_rows_csv(out)
    assert (row.precision, row.max_time_s, row.min_samples) == (0.5, 0.1, 5)
    before = out.read_text()

    other_time = cli("bench", "mnist-cnn", "--mode", "infer", "--batch", "1,2", "--max-time", "0.2", "--precision", "0.5",
                     "--threads", "1", "--out", out, "--resume")
    assert other_time.exit_code == 2
    assert "was measured with max_time_s = 0.1" in other_time.stderr and "asks for 0.2" in other_time.stderr
    other_model = cli("bench", "resnet-cifar-n5", "--mode", "infer", *FAST, "--threads", "1", "--out", out, "--resume")
    assert other_model.exit_code == 2
    assert "rows with model 'mnist-cnn', and this run plans model resnet-cifar-n5" in other_model.stderr
    assert out.read_text() == before

    more = cli(*BENCH, "--batch", "1,2", "--threads", "1", "--out", out, "--resume")  # the same sweep, extended
    assert more.exit_code == 0, more.output
    assert [r.batch for r in read_rows_csv(out)] == [1, 2]


@pytest.mark.slow
def test_resume_accepts_rows_of_an_older_csv_without_the_option_columns(cli, tmp_path):
    out = tmp_path / "r.csv"
    assert cli(*BENCH, "--threads", "1", "--out", out).exit_code == 0
    with out.open(newline="") as fh:
        records = list(csv.DictReader(fh))
    old_columns = [c for c in CSV_COLUMNS if c not in ("precision", "max_time_s", "min_samples")]
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    result = cli("bench", "mnist-cnn", "--mode", "infer", "--batch", "1,2", "--max-time", "0.2", "--precision", "0.5",
                 "--threads", "1", "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert [r.batch for r in read_rows_csv(out)] == [1, 2]


# ---------------------------------------------------------------------------------- exit codes, Ctrl-C


@pytest.mark.slow
def test_every_cell_failed_exits_1(cli, tmp_path):
    bench = cli(*BENCH, "--input", "1x4x4", "--out", tmp_path / "r.csv")  # a 5x5 kernel on a 4x4 image
    assert bench.exit_code == 1 and "every cell failed" in bench.stderr
    assert [r.status for r in read_rows_csv(tmp_path / "r.csv")] == ["error"]
    compare = cli(*COMPARE, "--input", "1x4x4", "--out", tmp_path / "c")
    assert compare.exit_code == 1 and "every cell failed" in compare.stderr
    assert (tmp_path / "c" / "report.md").exists()  # the report says why
    partly = cli(*BENCH, "--input", "1x4x4,1x28x28", "--out", tmp_path / "p.csv")
    assert partly.exit_code == 0


@pytest.mark.slow
def test_ctrl_c_while_compare_counts_keeps_no_empty_folder(tmp_path):
    out = tmp_path / "reports" / "r"
    proc = subprocess.Popen([sys.executable, "-m", "archbench", "compare", "wrn-40-10", "--batch", "1", "--mode", "infer",
                             "--input", "3x64x64", *FAST, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    for line in proc.stderr:
        if line.startswith("counting wrn-40-10"):
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    assert "interrupted while counting the models: nothing was measured yet (1 cell(s) planned)" in " ".join(rest.split())
    assert not (tmp_path / "reports").exists()


# -------------------------------------------------------------------------------------------- threads


@pytest.mark.slow
def test_threads_one_count_and_a_warning_above_the_cores(cli, tmp_path):
    listed = cli(*BENCH, "--threads", "1,2", "--out", tmp_path / "a.csv")
    assert listed.exit_code == 2 and "give one thread count" in listed.stderr
    too_many = len(os.sched_getaffinity(0)) + 1
    result = cli(*BENCH, "--threads", str(too_many), "--out", tmp_path / "b.csv")
    assert result.exit_code == 0
    assert f"warning: threads {too_many} is more than the {too_many - 1} core(s)" in " ".join(result.stderr.split())
    assert [r.threads for r in read_rows_csv(tmp_path / "b.csv")] == [too_many]


@pytest.mark.slow
def test_study_threads(cli, tmp_path):
    study = tmp_path / "s.toml"
    study.write_text('models = ["mnist-cnn"]\n[grid]\nbatches = [1]\nmodes = ["infer"]\n'
                     '[options]\nmax_time_s = 0.1\nprecision = 0.5\nthreads = [1, 2]\n')
    listed = cli("compare", "--study", study, "--out", tmp_path / "a")
    assert listed.exit_code == 2 and "options.threads: [1, 2]: give one thread count" in listed.stderr
    too_many = len(os.sched_getaffinity(0)) + 1
    study.write_text(study.read_text().replace("threads = [1, 2]", f"threads = {too_many}"))
    result = cli("compare", "--study", study, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert f"warning: threads {too_many} is more than" in " ".join(result.stderr.split())


# ------------------------------------------------------------------------------------- check and --set


SPEC = textwrap.dedent("""\
    name = "my-model"
    family = "mnist-cnn"
    description = "a spec without params"
    input = "1x28x28"
""")


def test_check_update_adds_a_missing_params_line(cli, tmp_path):
    (tmp_path / "my-model.toml").write_text(SPEC)
    result = cli("check", "my-model", "--specs", tmp_path, "--update")
    assert result.exit_code == 0 and no_traceback(result), result.output
    assert "UPDATED (was none)" in result.stdout
    assert (tmp_path / "my-model.toml").read_text() == SPEC + "params = 44_426\n"
    assert cli("check", "my-model", "--specs", tmp_path).exit_code == 0


def test_check_update_keeps_the_params_comment(cli, tmp_path):
    (tmp_path / "my-model.toml").write_text(SPEC + "params = 12  # from the paper, table 2\n\n[args]\n")
    assert cli("check", "my-model", "--specs", tmp_path, "--update").exit_code == 0
    assert "params = 44_426  # from the paper, table 2\n" in (tmp_path / "my-model.toml").read_text()


def test_set_value_is_blamed_not_the_spec_file(cli):
    result = cli("summary", "wrn-16-8", "--set", "depth=abc")
    assert result.exit_code == 2
    assert "--set depth='abc': model 'wrn-16-8': argument 'depth' = 'abc' should be int" in result.stderr
    assert "wrn-16-8.toml" not in result.stderr


# ------------------------------------------------------------------------------ README and docs examples


@pytest.mark.slow
def test_readme_check_update_example_from_the_repo_root(tmp_path):
    # the README's `archbench check 'wrn-*' --specs ./specs --update`, where ./specs is the built-in folder
    # itself (without --update: a drift would rewrite the repository's files; it exits 1 then)
    assert "archbench check 'wrn-*' --specs ./specs --update" in (REPO / "docs" / "models.md").read_text()
    result = run_subprocess("check", "wrn-*", "--specs", "./specs", cwd=REPO)
    assert result.exit_code == 0, result.output
    assert "has the name of a built-in spec" not in result.stderr


def test_readme_examples_that_write_files_leave_nothing_untracked():
    readme = "".join(p.read_text() for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")])
    assert "--study specs/studies/default.toml --device" not in readme  # --device is for ad-hoc comparisons
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/wrn.csv"], cwd=REPO, check=False)
    assert "--out runs/wrn.csv" not in readme or ignored.returncode == 0
    assert ".env.json" in readme
