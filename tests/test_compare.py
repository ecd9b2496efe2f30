"""`archbench compare` and `archbench report` end to end, on tiny models of a temporary --specs folder
and tiny grids: every file is produced and parses back, the tables hold the right models and cells, a
model that cannot run on an input has `error` cells with the located message, the report re-renders
identically from its CSV, a study's folder is never taken over by another study, an interrupted run
keeps its cells and resumes, and a finished report is replaced only by a finished run."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest

from archbench.errors import UsageError
from archbench.rows import read_rows_csv
from archbench.runs.compare import PARTIAL_CSV, PARTIAL_JSON, PARTIAL_SAMPLES, run_compare
from archbench.study import StudyOptions, adhoc_study
from archbench.timing.options import MeasureOptions

REPORT_FILES = {"report.md", "report.tex", "results.csv", "results.json", "throughput.png", "throughput.svg",
                "time_vs_input.png", "time_vs_input.svg", "params_vs_macs.png", "params_vs_macs.svg"}
FAST = ("--max-time", "0.1", "--precision", "0.2")


@pytest.fixture(scope="module")
def specs_dir(tmp_path_factory) -> Path:
    """Two tiny nets: a 10-layer WRN (runs at any input >= 8x8) and a CIFAR ResNet with one block per
    stage whose final AvgPool2d(8) needs a 64x64 input (at 3x32x32 it fails)."""
    directory = tmp_path_factory.mktemp("specs")
    (directory / "tiny-wrn.toml").write_text(textwrap.dedent("""
        name = "tiny-wrn"
        family = "wrn"
        description = "WRN-10-1: one block per stage"
        input = "3x32x32"
        [args]
        depth = 10
        widen_factor = 1
    """))
    (directory / "tiny-res.toml").write_text(textwrap.dedent("""
        name = "tiny-res"
        family = "resnet-cifar"
        description = "CIFAR ResNet, one block per stage, AvgPool2d(8) at the end"
        input = "3x64x64"
        [args]
        blocks = 0
    """))
    return directory


@pytest.fixture(scope="module")
def adhoc_report(specs_dir, tmp_path_factory):
    """One ad-hoc comparison through the real CLI, shared by the tests that read its files."""
    from archbench.cli import _state, main

    out = tmp_path_factory.mktemp("adhoc") / "report"
    args = ["compare", "tiny-wrn", "tiny-res", "--input", "3x32x32,3x64x64", "--batch", "1,2", "--mode", "infer,train",
            *FAST, "--specs", str(specs_dir), "--out", str(out)]
    _state["debug"] = False
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out, args


@pytest.mark.slow
def test_adhoc_compare_writes_every_file(adhoc_report):
    code, out, _ = adhoc_report
    assert code == 0
    assert {p.name for p in out.iterdir()} == REPORT_FILES  # and no partial or temporary files left


@pytest.mark.slow
def test_results_csv_holds_every_cell_with_counts(adhoc_report):
    _, out, _ = adhoc_report
    rows = read_rows_csv(out / "results.csv")
    cells = {(r.model, r.mode, r.batch, r.input) for r in rows}
    assert len(rows) == 16 and len(cells) == 16  # 2 models x 2 inputs x 2 batches x 2 modes
    failed = {(r.model, r.input) for r in rows if r.status != "ok"}
    assert failed == {("tiny-res", "3x32x32")}  # AvgPool2d(8) on a 2x2 map
    assert all(r.median_ms > 0 and r.ci_low_ms <= r.median_ms <= r.ci_high_ms for r in rows if r.status == "ok")
    with (out / "results.csv").open(newline="") as fh:
        records = list(csv.DictReader(fh))
    wrn = next(r for r in records if r["model"] == "tiny-wrn")
    # WRN-10-1 (bias-free convs), by hand: conv1 3*16*9 = 432; stage 1: BN16 32 + 16*16*9 2,304 + BN16 32
    # + 2,304 = 4,672; stage 2: BN16 32 + 16*32*9 4,608 + BN32 64 + 32*32*9 9,216 + 1x1 16*32 512 = 14,432;
    # stage 3: BN32 64 + 32*64*9 18,432 + BN64 128 + 64*64*9 36,864 + 1x1 32*64 2,048 = 57,536;
    # final BN64 128; fc 64*10+10 650. Total 77,850.
    assert int(wrn["params"]) == 77_850
    assert float(wrn["macs_per_sample"]) > 0 and float(wrn["param_mb"]) > 0
    res_small = next(r for r in records if r["model"] == "tiny-res" and r["input"] == "3x32x32")
    assert res_small["macs_per_sample"] == ""  # no counts where the model does not run


@pytest.mark.slow
def test_results_json_has_samples_stats_environment_and_study(adhoc_report):
    _, out, args = adhoc_report
    payload = json.loads((out / "results.json").read_text())
    assert payload["study"]["models"] == ["tiny-wrn", "tiny-res"]
    assert payload["command"].startswith("archbench compare tiny-wrn tiny-res --batch 1,2 --input 3x32x32,3x64x64")
    assert payload["environments"][0]["torch"] and payload["environments"][0]["cpu_count"]
    assert len(payload["rows"]) == 16
    ok = [r for r in payload["rows"] if r["status"] == "ok"]
    assert all(len(r["samples_ms"]) == r["n_samples"] >= 5 for r in ok)
    assert {(s["model"], s["input"]) for s in payload["model_stats"]} == {
        ("tiny-wrn", "3x32x32"), ("tiny-wrn", "3x64x64"), ("tiny-res", "3x64x64")}
    assert [(e["model"], e["input"]) for e in payload["model_stats_errors"]] == [("tiny-res", "3x32x32")]


@pytest.mark.slow
def test_report_tables_hold_the_models_cells_and_failures(adhoc_report):
    _, out, _ = adhoc_report
    text = (out / "report.md").read_text()
    for section in ("### cpu · infer · fp32", "### cpu · train · fp32", "## Relative speed (reference: `tiny-wrn`)",
                    "## Models", "## Environment", "## Achieved FLOP rate"):
        assert section in text
    header = "| model | 3x32x32 · b1 | 3x32x32 · b2 | 3x64x64 · b1 | 3x64x64 · b2 |"
    assert text.count(header) == 8  # speed, relative-speed, peak-memory and FLOP-rate tables, infer and train
    res_lines = [line for line in text.splitlines() if line.startswith("| `tiny-res` | error[^")]
    assert len(res_lines) == 6 and all(line.count("error[^") == 2 for line in res_lines)  # speed, memory, FLOP rate
    footnotes = [line for line in text.splitlines()
                 if line.startswith("[^") and "tiny-res, cpu" in line and "under load" not in line]  # load: by chance
    assert len(footnotes) == 4 and all("AvgPool2d" in line or "output size" in line.lower() for line in footnotes)
    relative = text[text.index("## Relative speed (reference: `tiny-wrn`)"):text.index("## Peak memory")]
    rows = [line for line in relative.splitlines() if line.startswith("| `tiny-res` |")]
    assert len(rows) == 2  # infer and train; tiny-res runs only at 3x64x64, so its 3x32x32 cells have no ratio
    assert all(line.startswith("| `tiny-res` | — | — | ×") and line.count("×") == 2 and line.count(" paired") == 2
               for line in rows)  # each 3x64x64 cell: the one figure to quote, the paired (interleaved) one


@pytest.mark.slow
def test_report_command_reproduces_the_markdown(cli, adhoc_report, tmp_path):
    _, out, _ = adhoc_report
    result = cli("report", out / "results.csv", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again" / "report.md").read_text() == (out / "report.md").read_text()
    assert {p.name for p in (tmp_path / "again").iterdir()} == REPORT_FILES
    assert "Relative speed (reference tiny-wrn)" in result.stdout


@pytest.mark.slow
def test_report_command_needs_the_json_beside_the_csv(cli, adhoc_report, tmp_path):
    _, out, _ = adhoc_report
    lone = tmp_path / "results.csv"
    lone.write_text((out / "results.csv").read_text())
    result = cli("report", lone)
    assert result.exit_code == 2
    assert "has no results.json beside it" in result.stderr


@pytest.mark.slow
def test_study_file_writes_to_reports_study_name(cli, specs_dir, tmp_path, monkeypatch):
    study = tmp_path / "tiny-study.toml"
    study.write_text(textwrap.dedent("""
        title = "Tiny study"
        models = ["mnist-cnn", "tiny-wrn"]
        [grid]
        devices = "cpu"
        batches = [1]
        modes = ["infer"]
        [options]
        max_time_s = 0.1
        precision = 0.2
        min_samples = 5
    """))
    monkeypatch.chdir(tmp_path)
    result = cli("compare", "--study", study, "--specs", specs_dir)
    assert result.exit_code == 0, result.output
    out = tmp_path / "reports" / "tiny-study"
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    rows = read_rows_csv(out / "results.csv")
    # no inputs in the grid: each model at its own default input
    assert [(r.model, r.input, r.status) for r in rows] == [("mnist-cnn", "1x28x28", "ok"), ("tiny-wrn", "3x32x32", "ok")]
    text = (out / "report.md").read_text()
    assert text.startswith("# Tiny study\n")
    assert f"archbench compare --study {study} --specs {specs_dir}" in text
    assert "report.md" in result.stderr and "Models (default input" in result.stdout


@pytest.mark.slow
def test_a_second_study_never_overwrites_another(cli, adhoc_report, specs_dir):
    _, out, _ = adhoc_report
    before = (out / "report.md").read_text()
    result = cli("compare", "mnist-cnn", "--batch", "1", "--mode", "infer", *FAST, "--out", out)
    assert result.exit_code == 2
    assert "holds the report of study 'tiny-wrn-vs-tiny-res', not 'mnist-cnn'" in result.stderr
    assert (out / "report.md").read_text() == before


# ---------------------------------------------------------------------------------------- interrupts


class InterruptAfter:
    """A listener that raises KeyboardInterrupt (as Ctrl-C would) once ``n`` cells have finished."""

    def __init__(self, n: int):
        self.n = n
        self.finished = 0

    def cell_finished(self, cell, row, index, todo):
        self.finished += 1
        if self.finished >= self.n:
            raise KeyboardInterrupt


def tiny_study(**options):
    return adhoc_study(["mnist-cnn"], batches=[1, 2], modes=["infer"],
                       options=StudyOptions(MeasureOptions(max_time_s=0.1, precision=0.2), **options))


@pytest.mark.slow
def test_interrupted_run_keeps_its_cells_and_resumes(tmp_path):
    study = tiny_study()
    out = tmp_path / "r"
    first = run_compare(study, out, command="archbench compare mnist-cnn", listener=InterruptAfter(1))
    assert first.interrupted and first.files == ()
    assert {p.name for p in out.iterdir()} == {PARTIAL_CSV, PARTIAL_JSON, PARTIAL_SAMPLES}  # no report yet
    assert len(read_rows_csv(out / PARTIAL_CSV)) == 1

    with pytest.raises(UsageError, match="holds an interrupted run.*resume=True.*force=True"):
        run_compare(study, out, command="archbench compare mnist-cnn")
    with pytest.raises(UsageError, match="different study definition"):
        run_compare(adhoc_study(["mnist-cnn"], batches=[4], modes=["infer"]), out, command="x", resume=True)

    second = run_compare(study, out, command="archbench compare mnist-cnn", resume=True)
    assert not second.interrupted and (second.previous, second.measured) == (1, 1)
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    payload = json.loads((out / "results.json").read_text())
    assert [r["batch"] for r in payload["rows"]] == [1, 2]
    assert all(len(r["samples_ms"]) == r["n_samples"] for r in payload["rows"])  # the first session's samples kept
    assert len(payload["environments"]) == 2
    assert "measured in 2 sessions" in (out / "report.md").read_text()


@pytest.mark.slow
def test_finished_report_is_replaced_only_by_a_finished_run(tmp_path):
    study = tiny_study()
    out = tmp_path / "r"
    run_compare(study, out, command="c")
    report = (out / "report.md").read_text()
    stored = json.loads((out / "results.json").read_text())

    cut = run_compare(study, out, command="c", listener=InterruptAfter(1))
    assert cut.interrupted
    assert (out / "report.md").read_text() == report  # the earlier report stands
    assert json.loads((out / "results.json").read_text()) == stored

    with pytest.raises(UsageError, match="nothing to resume"):
        run_compare(tiny_study(), tmp_path / "empty", command="c", resume=True)
    fresh = run_compare(study, out, command="c", force=True)  # --force discards the interrupted run
    assert not fresh.interrupted and fresh.previous == 0 and fresh.measured == 2
    assert not (out / PARTIAL_CSV).exists()
    assert json.loads((out / "results.json").read_text())["date"] >= stored["date"]
