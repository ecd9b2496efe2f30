"""The report side on fixed, hand-made numbers (no torch, no measuring): relative speeds and their
intervals checked by hand, CI coverage labels, cells measured under load, peak memory, tables holding the
right models and cells, failed cells with footnotes, the LaTeX tables well formed and escaped, every file
written atomically and read back, and the Markdown re-rendered identically."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import xml.etree.ElementTree as ET

import pytest

from archbench.files import atomic_path, atomic_write_text
from archbench.report import load_report_data, write_report
from archbench.report.cells import Footnotes, ci_label, load_message, load_note
from archbench.report.csvfile import CsvFormat
from archbench.report.latex import LatexFormat, render_latex
from archbench.report.markdown import MarkdownFormat, render_markdown
from archbench.report.relative import relative_speed, relative_speeds, relative_tables
from archbench.report.tables import (
    architecture_table,
    efficiency_tables,
    memory_tables,
    precision_summary,
    speed_tables,
)
from archbench.results.data import ModelInfo, ReportData
from archbench.results.jsonfile import JsonFormat, data_from_json, data_to_json
from archbench.rows import COUNT_COLUMNS, ModelStats, ResultRow, read_rows_csv
from archbench.study import adhoc_study


def ok_row(model, mode, batch, input, median, low, high, stop="precision", device="cpu"):
    return ResultRow(
        model=model, device=device, mode=mode, batch=batch, input=input, dtype="fp32", threads=2, n_samples=9,
        median_ms=median, ci_low_ms=low, ci_high_ms=high, iqr_ms=(high - low) / 2, min_ms=low,
        samples_per_s=batch / median * 1e3, flops_per_step=2e9 * batch, achieved_tflops=2e9 * batch / (median / 1e3) / 1e12,
        peak_fraction=0.25, peak_mem_mb=64.0, stop_reason=stop, warmup_iters=1,
        samples_ms=(low, low, median, median, median, high, high, high, high),
    )


def failed_row(model, mode, batch, input, status, error):
    return ResultRow(model=model, device="cpu", mode=mode, batch=batch, input=input, dtype="fp32", threads=2,
                     status=status, error=error)


def stats(model, input, params, macs, activation_bytes, uncounted=None):
    return ModelStats(model, input, 1, "cpu", "fp32", params, params, 10, 4 * params + 40, macs, 2 * macs, 4 * macs,
                      activation_bytes, dict(uncounted or {}))


@pytest.fixture
def data() -> ReportData:
    study = adhoc_study(["wide", "slim"], inputs=[(3, 32, 32), (3, 64, 64)], batches=[1, 8], modes=["infer", "train"])
    rows = (
        ok_row("wide", "infer", 1, "3x32x32", 10.0, 9.5, 10.7),
        ok_row("slim", "infer", 1, "3x32x32", 4.0, 3.9, 4.06),
        ok_row("wide", "infer", 8, "3x32x32", 40.0, 39.0, 41.0),
        failed_row("slim", "infer", 8, "3x32x32", "oom", "out of memory on cpu at batch 8"),
        ok_row("wide", "infer", 1, "3x64x64", 30.0, 29.0, 31.0, stop="max_time"),
        failed_row("slim", "infer", 1, "3x64x64", "error", "ModelRunError: AvgPool2d(8) in pool: output size is too small"),
        ok_row("wide", "train", 1, "3x32x32", 4.0, 3.9, 4.1),
        ok_row("slim", "train", 1, "3x32x32", 10.0, 9.6, 10.4),
    )
    return ReportData(
        study=study,
        rows=rows,
        models=(ModelInfo("wide", "wrn", "a wide net", "3x32x32"), ModelInfo("slim", "resnext", "a slim net", "3x32x32")),
        stats=(stats("wide", "3x32x32", 1_000_000, 2_000_000_000, 3 * 2**20),
               stats("wide", "3x64x64", 1_000_000, 8_000_000_000, 12 * 2**20),
               stats("slim", "3x32x32", 250_000, 500_000_000, 2**20, {"aten::add_": 3})),
        stats_errors=(("slim", "3x64x64", "ModelRunError: AvgPool2d(8) in pool: output size is too small"),),
        environments=({"archbench": "0.1.0", "torch": "2.14.1", "cuda": "13.0", "cudnn": 91000, "tf32_matmul": False,
                       "devices": {"cpu": "Test CPU"}, "threads": 2, "date": "2026-01-01T09:00:00+00:00"},),
        peaks_tflops={"cpu/fp32": 0.5},
        command="archbench compare wide slim --input 3x32x32,3x64x64",
        date="2026-01-01T10:30:00+00:00",
        planned_cells=8,
    )


# ------------------------------------------------------------------------------------ relative speed


def test_relative_speed_interval_comes_from_the_ci_ends_by_hand():
    ref = ok_row("a", "infer", 1, "3x32x32", 10.0, 9.5, 10.7)
    fast = ok_row("b", "infer", 1, "3x32x32", 4.0, 3.9, 4.06)
    speed = relative_speed(ref, fast)
    assert speed.ratio == pytest.approx(2.5)  # 10 / 4
    assert speed.low == pytest.approx(9.5 / 4.06)  # 2.3399: the reference as fast as it could be, b as slow
    assert speed.high == pytest.approx(10.7 / 3.9)  # 2.7436: asymmetric around 2.5 (-0.16, +0.24)
    # 9 samples: ranks 2 and 8, coverage 1 - 2 * 10/512 = 0.9609 each; both hold -> at least 0.9609^2
    assert speed.coverage == pytest.approx((1 - 20 / 512) ** 2)
    assert speed.text() == "×2.50 (2.34–2.74)"


def test_slower_than_reference_is_a_ratio_below_one():
    ref = ok_row("a", "train", 1, "3x32x32", 4.0, 3.9, 4.1)
    slow = ok_row("b", "train", 1, "3x32x32", 10.0, 9.6, 10.4)
    speed = relative_speed(ref, slow)
    assert (speed.ratio, speed.low, speed.high) == pytest.approx((0.4, 3.9 / 10.4, 4.1 / 9.6))
    assert speed.text() == "×0.400 (0.375–0.427)"


def test_the_issue_lopsided_interval_is_not_shown_symmetric():
    # 1,536-6,292 ms around 4,865 ms (the issue's case) against a tight 236.7 ms reference
    ref = ok_row("a", "train", 8, "3x64x64", 236.7, 236.0, 237.4)
    wild = ok_row("b", "train", 8, "3x64x64", 4865.0, 1536.0, 6292.0)
    speed = relative_speed(wild, ref)
    assert speed.low < speed.ratio - 10 and speed.high > speed.ratio + 5  # far longer on the low side
    assert speed.text() == "×20.6 (6.47–26.7)"


def test_a_five_sample_ci_is_labelled_with_its_coverage_not_95():
    five = dataclasses.replace(ok_row("a", "infer", 1, "3x32x32", 10.0, 9.0, 11.0), n_samples=5)  # old row: derived
    assert ci_label(five) == "93.7% CI"  # 1 - 2^-4 = 93.75%, rounded down
    assert ci_label(dataclasses.replace(five, ci_coverage=0.9375)) == "93.7% CI"
    assert ci_label(dataclasses.replace(five, n_samples=6)) == "95% CI"  # 6 samples: 96.9%
    assert ci_label(dataclasses.replace(five, n_samples=3)) == "75% CI"
    ref = ok_row("r", "infer", 1, "3x32x32", 20.0, 19.0, 21.0)
    assert relative_speed(ref, five).text() == "×2.00 (1.73–2.33; ≥90%)"  # 0.9375 x 0.9609 < 0.9025


def test_relative_speeds_cover_exactly_the_cells_both_models_measured(data):
    frame = relative_speeds(data)
    # slim failed at infer b8 and infer 3x64x64: only infer b1 3x32x32 and train b1 3x32x32 remain
    assert list(frame["text"]) == ["×2.50 (2.34–2.74)", "×0.400 (0.375–0.427)"]
    assert list(frame["mode"]) == ["infer", "train"]
    assert set(frame["reference"]) == {"wide"}


def test_relative_speed_tables_have_models_as_rows_and_cells_as_columns(data):
    tables = {key.title(): frame for key, frame in relative_tables(data)}
    assert list(tables) == ["cpu · infer · fp32", "cpu · train · fp32"]
    infer = tables["cpu · infer · fp32"]
    assert list(infer.index) == ["slim"]  # the reference is not a row
    assert list(infer.columns) == ["3x32x32 · b1", "3x32x32 · b8", "3x64x64 · b1"]
    assert list(infer.loc["slim"]) == ["×2.50 (2.34–2.74)", "—", "—"]


def test_a_paired_ratio_measured_under_load_is_not_comparable_never_a_figure(data):
    """An interleaved row whose rounds were too rarely quiet: "≠ not comparable (measured under load)" in the
    relative-speed table and the headline, no ratio in the frame (nor the medians' unpaired one), the reason in
    the load note."""
    from archbench.report.headline import headline_table

    rows = list(data.rows)
    rows[1] = dataclasses.replace(rows[1], rounds=40, loaded_rounds=38, under_load=True, paired_reason=(
        "not comparable (measured under load)"))
    loaded = dataclasses.replace(data, rows=tuple(rows))
    frame = relative_speeds(loaded)
    first = frame.iloc[0]
    assert first["text"] == "≠ not comparable (measured under load)" and math.isnan(first["ratio"])
    assert frame.iloc[1]["text"] == "×0.400 (0.375–0.427)"  # train: measured on its own, unchanged
    infer = dict((key.title(), table) for key, table in relative_tables(loaded))["cpu · infer · fp32"]
    assert infer.loc["slim", "3x32x32 · b1"] == "≠ not comparable (measured under load)"
    table, _ = headline_table(loaded)
    assert table.loc["slim", "infer vs wide"] == "≠ not comparable (measured under load)"
    assert "not comparable (measured under load)" in load_note(rows)
    assert r"$\neq$ not comparable (measured under load)" in render_latex(loaded)


def test_reference_can_be_another_model(data):
    data = dataclasses.replace(data, study=dataclasses.replace(data.study, reference="slim"))
    assert relative_speeds(data)["text"][0] == "×0.400 (0.364–0.427)"  # 4.0/10.0, 3.9/10.7 = 0.3645, 4.06/9.5


# ------------------------------------------------------------------------------------------ tables


def test_speed_tables_hold_the_models_and_cells_with_failures_footnoted(data):
    notes = Footnotes("markdown")
    tables = dict((key.title(), frame) for key, frame in speed_tables(data, notes))
    assert list(tables) == ["cpu · infer · fp32", "cpu · train · fp32"]
    infer = tables["cpu · infer · fp32"]
    assert list(infer.index) == ["wide", "slim"]
    assert list(infer.columns) == ["3x32x32 · b1", "3x32x32 · b8", "3x64x64 · b1"]
    assert infer.loc["wide", "3x32x32 · b1"] == "10.0 ms (9.50–10.7) · 100 /s"
    assert infer.loc["slim", "3x32x32 · b1"] == "4.00 ms (3.90–4.06) · 250 /s"
    assert infer.loc["wide", "3x64x64 · b1"].startswith("30.0 ms (29.0–31.0)†")  # budget ran out
    assert infer.loc["slim", "3x32x32 · b8"] == "OOM[^1]"
    assert infer.loc["slim", "3x64x64 · b1"] == "error[^2]"
    assert notes.items() == [
        (1, "slim, cpu infer, batch 8, 3x32x32, fp32: out of memory on cpu at batch 8"),
        (2, "slim, cpu infer, batch 1, 3x64x64, fp32: ModelRunError: AvgPool2d(8) in pool: output size is too small"),
    ]
    assert list(tables["cpu · train · fp32"].columns) == ["3x32x32 · b1"]


def test_cells_measured_under_load_and_short_intervals_are_marked(data):
    rows = list(data.rows)
    rows[0] = dataclasses.replace(rows[0], under_load=True, load_ratio=2.14)
    rows[1] = dataclasses.replace(rows[1], n_samples=5, ci_coverage=0.9375)
    notes = Footnotes("plain")
    infer = speed_tables(dataclasses.replace(data, rows=tuple(rows)), notes)[0][1]
    assert infer.loc["wide", "3x32x32 · b1"] == "10.0 ms (9.50–10.7) · 100 /s ‡"
    assert not any("under load" in m for m in notes.messages)  # one note lists them all, not a footnote each
    note = load_note(rows)
    assert note == ("‡ Measured under load, so probably inflated (measure these again on a quiet machine) — the "
                    "calibration kernel ran slower around the cell than at the start of the sweep: wide cpu infer b1 "
                    "3x32x32 fp32 (×2.14).")
    interleaved = [dataclasses.replace(rows[0], rounds=9, loaded_rounds=3, load_ratio=1.3, model=name)
                   for name in ("wide", "slim")]
    note = load_note(interleaved)
    assert note.count("interleaved bursts ran under CPU pressure") == 1  # the reason once, for both cells
    assert "wide cpu infer b1 3x32x32 fp32 (×1.30, 3 of 9 rounds), slim cpu infer b1 3x32x32 fp32" in note
    crowded = dataclasses.replace(rows[0], load_ratio=1.1)  # flagged by other processes' CPU time
    assert "other processes kept the CPU cores it needed busy" in load_message(crowded)
    assert infer.loc["slim", "3x32x32 · b1"] == "4.00 ms (3.90–4.06; 93.7% CI) · 250 /s"


def test_peak_memory_table(data):
    memory = memory_tables(data, Footnotes("plain"))[0][1]
    assert list(memory.loc["wide"]) == ["64.0", "64.0", "64.0"]
    assert memory.loc["slim", "3x32x32 · b8"] == "OOM [1]"


def test_an_emulated_peak_shows_no_fraction_and_says_why(data):
    note = "no % of peak for bf16 on cpu: its matmul peak (0.00143 TFLOP/s) is below fp32's (0.187 TFLOP/s)"
    rows = list(data.rows)
    rows[0] = dataclasses.replace(rows[0], peak_fraction=math.nan, note=note)  # as the sweep writes it
    notes = Footnotes("plain")
    infer = efficiency_tables(dataclasses.replace(data, rows=tuple(rows)), notes)[0][1]
    assert infer.loc["wide", "3x32x32 · b1"] == "0.200 [1]"  # 2 GFLOP / 10 ms, no "%"
    assert notes.messages[0] == note


def test_a_stored_emulated_peak_loses_its_fraction_in_an_old_report(data):
    rows = (*data.rows, dataclasses.replace(data.rows[0], dtype="bf16", peak_fraction=0.996))  # stored before the rule
    old = dataclasses.replace(data, rows=rows, peaks_tflops={"cpu/fp32": 0.5, "cpu/bf16": 0.001})
    notes = Footnotes("plain")
    bf16 = dict((key.title(), frame) for key, frame in efficiency_tables(old, notes))["cpu · infer · bf16"]
    (number, message), = [(n, m) for n, m in notes.items() if m.startswith("no % of peak")]
    assert bf16.loc["wide", "3x32x32 · b1"] == f"0.200 [{number}]"  # not 99.6%
    assert message.startswith("no % of peak for bf16 on cpu: its matmul peak (0.001 TFLOP/s) is below fp32's")
    assert "cpu/bf16: 0.001 TFLOP/s (emulated, no ceiling)" in render_markdown(old)


def test_architecture_table_counts(data):
    arch = architecture_table(data).set_index("model")
    assert list(arch.index) == ["wide", "slim"]
    assert arch.loc["wide", "params"] == 1_000_000
    assert arch.loc["wide", "gmacs"] == pytest.approx(2.0)
    assert arch.loc["wide", "gflops_forward"] == pytest.approx(4.0)
    assert arch.loc["wide", "activation_mb_per_sample"] == pytest.approx(3.0)
    assert arch.loc["slim", "param_mb"] == pytest.approx((4 * 250_000 + 40) / 2**20)


def test_precision_summary(data):
    summary = precision_summary(data.rows)
    assert (summary.cells_ok, summary.cells_failed, summary.converged) == (6, 2, 5)
    # half-widths relative to the medians: 6%, 2%, 2.5%, 3.33%, 2.5%, 4%
    assert summary.max_rel_half_width == pytest.approx(0.06)
    assert summary.median_rel_half_width == pytest.approx((0.025 + 1 / 30) / 2)
    assert summary.widest.model == "wide" and summary.widest.median_ms == 10.0


# ---------------------------------------------------------------------------------------- markdown


def test_markdown_names_conventions_command_date_environment_and_failures(data):
    text = render_markdown(data)
    assert text.startswith("# wide vs slim\n")
    assert "1 MAC = one multiply-accumulate = 2 FLOPs" in text
    assert "```sh\narchbench compare wide slim --input 3x32x32,3x64x64\n```" in text
    assert "Measured 2026-01-01 10:30 UTC." in text
    assert "| devices | cpu: Test CPU |" in text and "| torch | 2.14.1 |" in text
    assert "| cuda |" not in text and "| cudnn |" not in text and "| tf32_matmul |" not in text  # CPU-only run
    relative = text[text.index("## Relative speed (reference: `wide`)"):text.index("## Peak memory")]
    assert "(ref_low / high – ref_high / low)" in relative
    assert "| `slim` | ×2.50 (2.34–2.74) | — | — |" in relative
    assert "| `slim` | ×0.400 (0.375–0.427) |" in relative
    memory = text[text.index("## Peak memory"):text.index("## Achieved FLOP rate")]
    assert "| `wide` | 64.0 | 64.0 | 64.0 |" in memory
    assert "No checked cell was measured under load. 6 of 6 cell(s) were not checked" in text  # rows predating the check
    checked = dataclasses.replace(data, rows=tuple(dataclasses.replace(r, load_ratio=1.1) for r in data.rows))
    assert "No cell was measured under load." in render_markdown(checked)
    assert "Error bars: the CI of each cell's median" in text
    oom_note = re.search(r"^\[\^(\d+)\]: slim, cpu infer, batch 8, 3x32x32, fp32: out of memory on cpu at batch 8$", text, re.M)
    assert oom_note and f"| `slim` | 4.00 ms (3.90–4.06) · 250 /s | OOM[^{oom_note.group(1)}] |" in text
    assert "ModelRunError: AvgPool2d(8)" in text
    assert "aten::add_ ×3" in text  # ops the counter missed are said, not hidden
    assert "| `wide` | 1,000,000 |" in text
    assert "| `wide` | 0.500 (25.0%) |" in text  # wide, train b1: 2 GFLOP / 4 ms = 0.5 TFLOP/s, 25% of peak
    assert "![Throughput against batch size](throughput.png)" in text
    assert "5 of 6 measured cells reached ±3%" in text
    assert text == render_markdown(data)  # deterministic


def test_gpu_settings_are_shown_when_a_cuda_device_measured(data):
    rows = (*data.rows, dataclasses.replace(data.rows[0], device="cuda"))
    text = render_markdown(dataclasses.replace(data, rows=rows))
    assert "| cuda | 13.0 |" in text and "| tf32_matmul | False |" in text


def test_incomplete_data_says_so(data):
    partial = dataclasses.replace(data, rows=data.rows[:3])
    assert "**Incomplete:** 3 of 8 cells were measured." in render_markdown(partial)


# ------------------------------------------------------------------------------------------- latex

SPECIALS = "loss_fn & 50% #1 {x} ~ ^ \\ $ <3> | µs ± × – — · ≥ † café"
# what LaTeX (with booktabs) defines; anything else in report.tex would not compile
KNOWN_COMMANDS = {"begin", "end", "centering", "caption", "label", "toprule", "midrule", "bottomrule", "item", "times",
                  "pm", "mu", "cdot", "geq", "leq", "dag", "ddag", "textbackslash", "textasciitilde", "textasciicircum",
                  "textless", "textgreater", "textbar", "resizebox", "ifdim", "width", "linewidth", "else", "fi"}


def _typeset_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("%")]


def _unescaped(text: str, char: str) -> int:
    """How often ``char`` stands in ``text`` not escaped by a backslash."""
    return len(re.findall(rf"(?<!\\){re.escape(char)}", text.replace("\\\\", "")))


def _balanced_braces(text: str) -> bool:
    depth = 0
    for char in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_report_compiles_as_text(data):
    rows = (*data.rows, failed_row("wide", "train", 8, "3x32x32", "error", SPECIALS))
    text = render_latex(dataclasses.replace(data, rows=rows))
    assert text.isascii()  # pdflatex needs no Unicode set-up
    assert text.startswith("% wide vs slim: the tables of report.md") and "\\usepackage{booktabs,graphicx}" in text.splitlines()[2]
    typeset = "\n".join(_typeset_lines(text))
    assert _balanced_braces(typeset) and _unescaped(typeset, "$") % 2 == 0 and _unescaped(typeset, "%") == 0
    assert set(re.findall(r"\\([A-Za-z]+)", typeset)) <= KNOWN_COMMANDS
    tabulars = re.findall(r"\\begin\{tabular\}\{([lr]+)\}\n(.*?)\\end\{tabular\}", typeset, re.S)
    # models, MACs per input, then speed, relative speed, throughput, memory and FLOP rate for infer and train
    floats = re.findall(r"\\begin\{(table\*?)\}.*?\\begin\{tabular\}\{([lr]+)\}.*?\\end\{(table\*?)\}", typeset, re.S)
    assert len(tabulars) == 2 + 5 * 2 == len(floats)
    assert all(begin == end for begin, _, end in floats)
    # wide tables span both columns of a two-column paper: the models' counts (9 columns); not the MACs per input
    assert [begin for begin, _, _ in floats[:2]] == ["table*", "table"]
    assert typeset.count("\\resizebox{") == len(tabulars)  # every table fits the column
    for spec, body in tabulars:
        lines = body.splitlines()
        assert [lines[0], lines[2], lines[-1]] == ["\\toprule", "\\midrule", "\\bottomrule"]
        for line in (lines[1], *lines[3:-1]):  # the header and every row: one cell per column
            assert line.endswith(" \\\\") and _unescaped(line, "&") == len(spec) - 1, line
    escaped = ("loss\\_fn \\& 50\\% \\#1 \\{x\\} \\textasciitilde{} \\textasciicircum{} \\textbackslash{} \\$ "
               "\\textless{}3\\textgreater{} \\textbar{} $\\mu$s $\\pm$ $\\times$ -- --- $\\cdot$ $\\geq$ \\dag{} cafe")
    assert f"\\item[{{[5]}}] wide, cpu train, batch 8, 3x32x32, fp32: {escaped}" in text
    assert "wide & 4.00 (3.90--4.10) & error [5] \\\\" in text  # one number per cell: the median and its CI
    assert "wide & 250 & error [5] \\\\" in text  # throughput in a table of its own
    assert "slim & $\\times$2.50 (2.34--2.74) & --- & --- \\\\" in text
    assert "\\label{tab:wide-vs-slim-speed-cpu-infer-fp32}" in text


def test_latex_notes_carry_the_markdown_footnote_numbers(data):
    text, markdown = render_latex(data), render_markdown(data)
    notes = re.findall(r"^\\item\[\{\[(\d+)\]\}\] (.*)$", text, re.M)
    assert [number for number, _ in notes] == ["1", "2", "3", "4"]
    assert "[^3]: slim, cpu infer, batch 8, 3x32x32, fp32: out of memory on cpu at batch 8" in markdown
    assert ("3", "slim, cpu infer, batch 8, 3x32x32, fp32: out of memory on cpu at batch 8") in notes
    assert "slim & 4.00 (3.90--4.06) & OOM [3] & error [4] \\\\" in text


# ------------------------------------------------------------------------------------------- files


def test_every_file_is_written_and_parses_back(data, tmp_path):
    written = write_report(data, tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(["results.csv", "results.json", "report.md", "report.tex", "throughput.png", "throughput.svg",
                            "time_vs_input.png", "time_vs_input.svg", "params_vs_macs.png", "params_vs_macs.svg"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left

    # CSV: the ResultRow columns read back to the same rows; count columns carry units in their names
    back = read_rows_csv(tmp_path / "results.csv")
    assert back == [dataclasses.replace(r, samples_ms=()) for r in data.rows]
    with (tmp_path / "results.csv").open(newline="") as fh:
        records = list(csv.DictReader(fh))
    assert set(COUNT_COLUMNS) <= set(records[0])
    wide_64 = next(r for r in records if r["model"] == "wide" and r["input"] == "3x64x64")
    assert (wide_64["params"], wide_64["macs_per_sample"], wide_64["activation_mb_per_sample"]) == ("1000000", "8000000000", "12.0")
    slim_64 = next(r for r in records if r["model"] == "slim" and r["input"] == "3x64x64")
    assert slim_64["status"] == "error" and slim_64["macs_per_sample"] == ""

    # JSON: everything, raw samples included
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["rows"][0]["samples_ms"] == [9.5, 9.5, 10.0, 10.0, 10.0, 10.7, 10.7, 10.7, 10.7]
    assert payload["rows"][3]["median_ms"] is None  # NaN is null in JSON
    assert data_from_json(payload) == data

    # plots: real PNG and SVG files
    for stem in ("throughput", "time_vs_input", "params_vs_macs"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert ET.parse(tmp_path / f"{stem}.svg").getroot().tag.endswith("svg")


def test_stored_results_re_render_the_same_markdown_and_latex(data, tmp_path):
    write_report(data, tmp_path, [CsvFormat(), JsonFormat(), MarkdownFormat(), LatexFormat()])  # plots: another test
    loaded = load_report_data(tmp_path / "results.csv")
    assert loaded == data
    assert render_markdown(loaded) == (tmp_path / "report.md").read_text()
    assert render_latex(loaded) == (tmp_path / "report.tex").read_text()


@pytest.mark.slow
def test_svg_output_is_reproducible(data, tmp_path):
    write_report(data, tmp_path / "a")
    write_report(data, tmp_path / "b")
    for name in ("throughput.svg", "params_vs_macs.svg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_json_round_trip_in_memory(data):
    assert data_from_json(json.loads(json.dumps(data_to_json(data)))) == data


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a rep")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


# ------------------------------------------------------------------------------------------ console


def _rendered(renderable) -> str:
    from rich.console import Console

    console = Console(width=250, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_bench_table_labels_short_intervals_and_cells_under_load(data):
    from archbench.cli.bench import rows_table

    five = dataclasses.replace(data.rows[1], n_samples=5, ci_coverage=0.9375)
    loaded = dataclasses.replace(data.rows[0], under_load=True, load_ratio=2.14, rounds=12)
    lone = dataclasses.replace(data.rows[0], batch=32, under_load=True, load_ratio=124.3, rounds=0)
    text = _rendered(rows_table([loaded, five, data.rows[2], lone], title="t"))
    assert "3.90–4.06 [93.7%]" in text and "[N%]: the CI's exact coverage where it is below 95%" in text
    assert "under load ×2.1" in text and "under load: the CPU was busy with other work while the cell ran" in text
    assert text.count("under load") == 3 and "×124" not in text  # a lone cell's figure is the kernel's, not its own
    assert "39.0–41.0 " in text  # a 95% interval carries no label
    quiet = _rendered(rows_table([data.rows[2]], title="t"))
    assert "[93.7%]" not in quiet and "under load" not in quiet


@pytest.mark.slow
def test_report_command_prints_the_relative_speed_table_and_the_notes(cli, data, tmp_path):
    rows = list(data.rows)
    rows[0] = dataclasses.replace(rows[0], under_load=True, load_ratio=2.14)
    rows[1] = dataclasses.replace(rows[1], n_samples=5, ci_coverage=0.9375)
    write_report(dataclasses.replace(data, rows=tuple(rows)), tmp_path / "first")
    result = cli("report", tmp_path / "first" / "results.csv", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert "Relative speed (reference wide)" in result.stdout
    assert re.search(r"slim\s+×2\.50 \(2\.34–2\.74; ≥90%\)\s+—\s+—", result.stdout)  # 0.9609 x 0.9375 < 0.9025
    assert "4.00 ms (3.90–4.06; 93.7% CI) · 250 /s" in result.stdout
    assert ("the calibration kernel ran slower around the cell than at the start of the sweep: wide cpu infer b1 "
            "3x32x32 fp32 (×2.14)") in " ".join(result.stdout.split())  # as the terminal wraps it, unwrapped


# ------------------------------------------------------------------------------------- environment

CPUINFO_VM = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
              "stepping\t: 1\nflags\t\t: fpu avx2 hypervisor\n\nprocessor\t: 1\nmodel name\t: other\n")
LSCPU_VM = ("Architecture:  x86_64\nModel name:    AMD EPYC\nCPU family:    25\nModel:         1\nStepping:      1\n"
            "Hypervisor vendor:  KVM\n")


def test_cpu_model_is_the_full_name_and_identifies_a_generic_vm_cpu():
    from archbench.env.environment import cpu_model

    bare = "processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\nflags\t\t: fpu avx2\n"
    assert cpu_model(bare, lscpu="") == "AMD EPYC 7763 64-Core Processor"
    assert cpu_model(CPUINFO_VM, LSCPU_VM) == "AMD EPYC (family 25, model 1, stepping 1; KVM guest)"
    assert cpu_model(CPUINFO_VM, lscpu="") == "AMD EPYC (family 25, model 1, stepping 1; virtual machine)"
    assert cpu_model("", LSCPU_VM) == "AMD EPYC (family 25, model 1, stepping 1; KVM guest)"  # no /proc/cpuinfo


def test_this_machine_cpu_name_says_more_than_the_family():
    from archbench.env.environment import cpu_model

    name = cpu_model()
    assert name and (any(ch.isdigit() for ch in name))  # a model number, or family/model/stepping numbers


def test_plots_ring_the_cells_measured_under_load(data):
    from archbench.report.plots import line_panels, throughput_error

    rows = list(data.rows)
    rows[0] = dataclasses.replace(rows[0], under_load=True)
    loaded = dataclasses.replace(data, rows=tuple(rows))
    _, _, panels = line_panels(loaded, "input", lambda r: r.batch, throughput_error, lambda m, v: f"{m} · {v}")
    labels = [label for ax, _ in panels for label in ax.get_legend_handles_labels()[1]]
    assert labels.count("measured under load (‡)") == 1
    _, _, quiet = line_panels(data, "input", lambda r: r.batch, throughput_error, lambda m, v: f"{m} · {v}")
    assert not any("under load" in label for ax, _ in quiet for label in ax.get_legend_handles_labels()[1])


LATEX_PAPER = r"""\documentclass[twocolumn]{article}
\usepackage{booktabs,graphicx}
\begin{document}
\input{report.tex}
\end{document}
"""


def test_latex_report_compiles_with_pdflatex_and_fits_a_paper_column(data, tmp_path):
    """A real LaTeX engine (Debian's texlive-latex-base and -recommended; .ci/run installs them): report.tex
    in a two-column paper compiles, and no table runs past the column (no overfull box)."""
    import shutil
    import subprocess

    pdflatex = shutil.which("pdflatex") or pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base "
                                                      "texlive-latex-recommended)")
    rows = (*data.rows, failed_row("wide", "train", 8, "3x32x32", "error", SPECIALS))
    rows = (dataclasses.replace(rows[0], under_load=True, load_ratio=2.0), *rows[1:])
    (tmp_path / "report.tex").write_text(render_latex(dataclasses.replace(data, rows=rows)))
    (tmp_path / "paper.tex").write_text(LATEX_PAPER)
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 0
    assert "Overfull \\hbox" not in log
