"""The report side on fixed, hand-made numbers (no torch, no measuring): relative speeds and their
uncertainty checked by hand, tables holding the right models and cells, failed cells with footnotes,
every file written atomically and read back, and the Markdown re-rendered identically."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import xml.etree.ElementTree as ET

import pytest

from archbench.report import ModelInfo, ReportData, load_report_data, write_report
from archbench.report.csvfile import COUNT_COLUMNS
from archbench.report.files import atomic_path, atomic_write_text
from archbench.report.jsonfile import data_from_json, data_to_json
from archbench.report.markdown import render_markdown
from archbench.report.tables import (
    Footnotes,
    architecture_table,
    precision_summary,
    relative_speed,
    relative_speeds,
    speed_phrase,
    speed_tables,
)
from archbench.results import ModelStats, ResultRow, read_rows_csv
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
        environments=({"archbench": "0.1.0", "torch": "2.14.1", "devices": {"cpu": "Test CPU"}, "threads": 2,
                       "date": "2026-01-01T09:00:00+00:00"},),
        peaks_tflops={"cpu/fp32": 0.5},
        command="archbench compare wide slim --input 3x32x32,3x64x64",
        date="2026-01-01T10:30:00+00:00",
        planned_cells=8,
    )


# ------------------------------------------------------------------------------------ relative speed


def test_relative_speed_and_uncertainty_by_hand():
    ref = ok_row("a", "infer", 1, "3x32x32", 10.0, 9.5, 10.7)  # half-width 0.6 -> 6% of the median
    fast = ok_row("b", "infer", 1, "3x32x32", 4.0, 3.9, 4.06)  # half-width 0.08 -> 2%
    ratio, uncertainty = relative_speed(ref, fast)
    assert ratio == pytest.approx(2.5)  # 10 / 4
    assert uncertainty == pytest.approx(2.5 * math.sqrt(0.06**2 + 0.02**2))  # = 0.158114
    assert uncertainty == pytest.approx(0.158114, abs=1e-6)
    assert speed_phrase(ratio, uncertainty) == "2.50 ± 0.16 × faster"


def test_slower_than_reference_is_phrased_as_slower_with_the_same_relative_uncertainty():
    ref = ok_row("a", "train", 1, "3x32x32", 4.0, 3.9, 4.1)  # 2.5%
    slow = ok_row("b", "train", 1, "3x32x32", 10.0, 9.6, 10.4)  # 4%
    ratio, uncertainty = relative_speed(ref, slow)
    assert ratio == pytest.approx(0.4)
    assert uncertainty == pytest.approx(0.4 * math.sqrt(0.025**2 + 0.04**2))
    # 1/r = 2.5; its uncertainty u/r^2 = 2.5 * sqrt(0.025^2 + 0.04^2) = 0.1179
    assert speed_phrase(ratio, uncertainty) == "2.50 ± 0.12 × slower"


def test_relative_speeds_cover_exactly_the_cells_both_models_measured(data):
    frame = relative_speeds(data)
    # slim failed at infer b8 and infer 3x64x64: only infer b1 3x32x32 and train b1 3x32x32 remain
    assert list(frame["sentence"]) == [
        "slim ran 2.50 ± 0.16 × faster than wide (infer, batch 1, 3x32x32, cpu)",
        "slim ran 2.50 ± 0.12 × slower than wide (train, batch 1, 3x32x32, cpu)",
    ]
    assert set(frame["reference"]) == {"wide"}


def test_reference_can_be_another_model(data):
    data = dataclasses.replace(data, study=dataclasses.replace(data.study, reference="slim"))
    sentences = list(relative_speeds(data)["sentence"])
    assert sentences[0] == "wide ran 2.50 ± 0.16 × slower than slim (infer, batch 1, 3x32x32, cpu)"


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
    assert "- slim ran 2.50 ± 0.16 × faster than wide (infer, batch 1, 3x32x32, cpu)" in text
    assert "u = r · √((h_ref/m_ref)² + (h/m)²)" in text
    oom_note = re.search(r"^\[\^(\d+)\]: slim, cpu infer, batch 8, 3x32x32, fp32: out of memory on cpu at batch 8$", text, re.M)
    assert oom_note and f"| `slim` | 4.00 ms (3.90–4.06) · 250 /s | OOM[^{oom_note.group(1)}] |" in text
    assert "ModelRunError: AvgPool2d(8)" in text
    assert "aten::add_ ×3" in text  # ops the counter missed are said, not hidden
    assert "| `wide` | 1,000,000 |" in text
    assert "| `wide` | 0.500 (25.0%) |" in text  # wide, train b1: 2 GFLOP / 4 ms = 0.5 TFLOP/s, 25% of peak
    assert "![Throughput against batch size](throughput.png)" in text
    assert "5 of 6 measured cells reached ±3%" in text
    assert text == render_markdown(data)  # deterministic


def test_incomplete_data_says_so(data):
    partial = dataclasses.replace(data, rows=data.rows[:3])
    assert "**Incomplete:** 3 of 8 cells were measured." in render_markdown(partial)


# ------------------------------------------------------------------------------------------- files


def test_every_file_is_written_and_parses_back(data, tmp_path):
    written = write_report(data, tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(["results.csv", "results.json", "report.md", "throughput.png", "throughput.svg",
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


def test_stored_results_re_render_the_same_markdown(data, tmp_path):
    write_report(data, tmp_path)
    loaded = load_report_data(tmp_path / "results.csv")
    assert loaded == data
    assert render_markdown(loaded) == (tmp_path / "report.md").read_text()


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
