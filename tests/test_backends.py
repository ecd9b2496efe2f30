"""The backend grid axis (archbench.timing.backends): eager, compile, export (AOTInductor), onnxruntime; their
outputs checked against eager; the speed-up vs eager table; older CSVs and stores (``compiled``, no backend)."""

from __future__ import annotations

import csv
import math
import sqlite3

import pytest

from archbench.report.backends import backend_comparisons, backends_section
from archbench.rows import CSV_COLUMNS, ResultRow, cell_key, read_rows_csv
from archbench.timing.backends import check_backends, numerics_note, one_line, output_error, with_compile_mode

DATA_DEPENDENT = '''
import torch
from torch import nn

class Branchy(nn.Module):
    """Takes a branch on a tensor's value: torch.export refuses (data-dependent control flow)."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:
            y = y.relu()
        return self.fc(y.mean((2, 3)))

class Cummax(nn.Module):
    """aten.cummax: torch.export takes it, the ONNX exporter has no function for it."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.cummax(x, dim=1).values.mean((1, 2)))

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))
'''


@pytest.fixture
def nets(tmp_path):
    (tmp_path / "nets.py").write_text(DATA_DEPENDENT)
    return tmp_path / "nets.py"


def _bench(cli, tmp_path, *args):
    out = tmp_path / "out.csv"
    result = cli("bench", *args, "--batch", "2", "--threads", "1", "--max-time", "0.3", "--precision", "0.5",
                 "--no-db", "--out", str(out))
    rows = read_rows_csv(out) if out.exists() else []
    return result, {(r.backend, r.mode): r for r in rows}


# ------------------------------------------------------------------------------------------ options


def test_backend_labels_are_checked_and_compile_mode_applies_to_compile():
    assert check_backends(["eager", "compile:default", "onnxruntime", "eager"]) == ("eager", "compile", "onnxruntime")
    assert with_compile_mode(("eager", "compile"), "max-autotune") == ("eager", "compile:max-autotune")
    with pytest.raises(Exception, match="'tensorrt' is not one of: eager, compile, export, onnxruntime"):
        check_backends(["tensorrt"])
    with pytest.raises(Exception, match="compile mode 'fast' is not one of: default, max-autotune"):
        check_backends(["compile:fast"])


def test_bad_backend_options_exit_2_before_anything_runs(cli, tmp_path):
    result = cli("bench", "mnist-cnn", "--backend", "eager,tensorrt", "--out", str(tmp_path / "x.csv"))
    assert result.exit_code == 2
    assert "--backend 'tensorrt' is not one of: eager, compile, export, onnxruntime" in result.stderr
    result = cli("bench", "mnist-cnn", "--compile-mode", "max-autotune", "--out", str(tmp_path / "x.csv"))
    assert result.exit_code == 2
    assert "--compile-mode applies to the compile backend" in result.stderr
    assert not (tmp_path / "x.csv").exists()


# ----------------------------------------------------------------------------------------- numerics


def test_output_error_is_normwise_over_every_float_tensor():
    import torch

    eager = (torch.tensor([[4.0, -2.0], [0.0, 1.0]]), {"aux": torch.tensor([0.5])}, torch.tensor([1, 2]))
    other = [torch.tensor([[4.0, -2.0], [0.01, 1.0]]), torch.tensor([0.54])]  # onnxruntime: a flat list
    error = output_error(eager, other)
    assert error.max_abs == pytest.approx(0.04, abs=1e-6)  # the aux tensor's 0.04, not the logit's 0.01
    assert error.max_rel == pytest.approx(0.04 / 4.0, abs=1e-6)  # over the largest magnitude, 4
    with pytest.raises(Exception, match=r"does not match eager's \(2x2, 1\)"):
        output_error(eager, [torch.zeros(2, 2)])


def test_numerics_flag_is_dtype_aware():
    assert numerics_note(math.nan, "fp32") == ""
    assert numerics_note(9e-4, "fp32") == ""
    assert numerics_note(2e-3, "fp32") == "numerics: output differs from eager by 0.002 (relative) > 0.001 tolerated for fp32"
    assert numerics_note(2e-3, "bf16") == ""
    assert numerics_note(2e-2, "fp16").startswith("numerics:")
    assert numerics_note(2e-2, "bf16") == ""


def test_one_line_takes_the_deepest_cause_without_colour_codes():
    try:
        try:
            raise LookupError("No ONNX function \x1b[96mfound\x1b[0m for aten.cummax\nmore")
        except LookupError as inner:
            raise RuntimeError("Failed. This is step 3/3\n- advice") from inner
    except RuntimeError as exc:
        assert one_line(exc) == "LookupError: No ONNX function found for aten.cummax"
    assert one_line(ValueError("x" * 500), limit=20) == "ValueError: xxxxxxx…"


# ---------------------------------------------------------------------------------------- the sweep


def test_compile_beside_eager_checks_numerics(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBENCH_COMPILE_BACKEND", "eager")  # Dynamo's capture, no code generation
    result, rows = _bench(cli, tmp_path, "mnist-cnn", "--backend", "eager,compile", "--mode", "infer")
    assert result.exit_code == 0, result.output
    assert list(rows) == [("eager", "infer"), ("compile", "infer")]
    assert all(r.status == "ok" for r in rows.values())
    compiled = rows[("compile", "infer")]
    assert compiled.compiled and compiled.compile_s > 0
    assert compiled.max_abs_err == 0 and compiled.max_rel_err == 0  # the eager backend computes what eager does
    assert math.isnan(rows[("eager", "infer")].max_rel_err) and not rows[("eager", "infer")].compiled
    assert "speed-up vs eager" in result.stdout


def test_compile_flag_is_backend_compile(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBENCH_COMPILE_BACKEND", "eager")
    result, rows = _bench(cli, tmp_path, "mnist-cnn", "--compile", "--mode", "infer")
    assert result.exit_code == 0, result.output
    assert list(rows) == [("compile", "infer")]


def test_exporter_failure_is_that_backends_error_row_and_the_sweep_goes_on(cli, tmp_path, nets):
    result, rows = _bench(cli, tmp_path, f"{nets}:Branchy", "--input", "3x8x8", "--backend", "eager,export",
                          "--mode", "infer")
    assert result.exit_code == 0, result.output
    assert rows[("eager", "infer")].status == "ok"
    row = rows[("export", "infer")]
    assert row.status == "error"
    assert row.error.startswith("torch.export cannot export the model (needed by the export backend): "
                                "GuardOnDataDependentSymNode: Could not guard on data-dependent expression")
    assert "\n" not in row.error
    assert "error (" in result.stderr and "export" in result.stderr


def test_exported_backends_run_fp32_inference_only(cli, tmp_path):
    result, rows = _bench(cli, tmp_path, "mnist-cnn", "--backend", "export,onnxruntime", "--mode", "train")
    assert result.exit_code == 1  # every cell failed
    for backend in ("export", "onnxruntime"):
        assert rows[(backend, "train")].status == "unsupported"
        assert rows[(backend, "train")].error == \
            f"the {backend} backend runs inference only (train mode needs eager or compile)."
    (tmp_path / "out.csv").unlink()
    result, rows = _bench(cli, tmp_path, "mnist-cnn", "--backend", "export", "--mode", "infer", "--dtype", "bf16")
    assert rows[("export", "infer")].status == "unsupported"
    assert rows[("export", "infer")].error.startswith("the export backend runs fp32 only here")


@pytest.mark.slow  # the ONNX exporter's first use imports onnxscript and converts: several seconds
def test_onnxruntime_runs_with_numerics_and_an_op_onnx_lacks_is_an_error_row(cli, tmp_path, nets):
    result, rows = _bench(cli, tmp_path, f"{nets}:Tiny", "--input", "3x8x8", "--backend", "eager,onnxruntime",
                          "--mode", "infer")
    assert result.exit_code == 0, result.output
    row = rows[("onnxruntime", "infer")]
    assert row.status == "ok" and row.compile_s > 0
    assert 0 <= row.max_rel_err < 1e-3 and row.max_abs_err < 1e-3 and "numerics" not in row.note
    (tmp_path / "out.csv").unlink()
    result, rows = _bench(cli, tmp_path, f"{nets}:Cummax", "--input", "3x8x8", "--backend", "eager,onnxruntime",
                          "--mode", "infer")
    assert rows[("eager", "infer")].status == "ok"
    assert rows[("onnxruntime", "infer")].status == "error"
    assert rows[("onnxruntime", "infer")].error == (
        "torch.onnx.export cannot convert the model to ONNX: DispatchError: No ONNX function found for "
        "<OpOverload(op='aten.cummax', overload='default')>. Failure message: No decompositions registered for the "
        "real-valued input")


@pytest.mark.slow  # AOTInductor compiles C++: about a minute on a small machine, even for a tiny model
def test_export_backend_builds_an_aoti_package_and_matches_eager(cli, tmp_path, nets):
    result, rows = _bench(cli, tmp_path, f"{nets}:Tiny", "--input", "3x8x8", "--backend", "eager,export", "--mode", "infer")
    assert result.exit_code == 0, result.output
    row = rows[("export", "infer")]
    assert row.status == "ok" and row.compile_s > 0 and 0 <= row.max_rel_err < 1e-3


# ------------------------------------------------------------------------------------------ reading


def test_a_csv_without_backend_reads_compiled_as_compile_and_resumes(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHBENCH_COMPILE_BACKEND", "eager")
    out = tmp_path / "old.csv"
    result = cli("bench", "mnist-cnn", "--compile", "--batch", "1", "--mode", "infer", "--threads", "1",
                 "--max-time", "0.3", "--precision", "0.5", "--no-db", "--out", str(out))
    assert result.exit_code == 0, result.output
    with out.open(newline="") as fh:  # as an archbench without backends wrote it
        records = list(csv.DictReader(fh))
    old_columns = [c for c in CSV_COLUMNS if c not in ("backend", "max_abs_err", "max_rel_err")]
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    (row,) = read_rows_csv(out)
    assert (row.backend, row.compiled) == ("compile", True)
    assert row.key() == cell_key("mnist-cnn", "cpu", "infer", 1, "1x28x28", "fp32", False, True, 1)
    result = cli("bench", "mnist-cnn", "--backend", "compile,eager", "--batch", "1", "--mode", "infer", "--threads", "1",
                 "--max-time", "0.3", "--precision", "0.5", "--no-db", "--out", str(out), "--resume")
    assert result.exit_code == 0, result.output
    assert "1 cell(s) measured, 1 already in the file" in result.stderr
    assert [r.backend for r in read_rows_csv(out)] == ["compile", "eager"]


def test_a_version_1_store_gets_backend_in_its_key_and_keeps_its_samples(tmp_path):
    from archbench.results.store import Store
    from archbench.results.store_file import schema_statements

    db_path = tmp_path / "v1.db"
    raw = sqlite3.connect(db_path)
    for statement in schema_statements():  # today's schema less the backend column: what version 1 created
        raw.execute(statement.replace(', "backend" TEXT NOT NULL', "").replace(', "backend"', "")
                    .replace(', "max_abs_err" REAL', "").replace(', "max_rel_err" REAL', ""))
    raw.execute("PRAGMA user_version = 1")
    raw.execute("PRAGMA application_id = 1095910210")
    raw.execute("INSERT INTO runs (started_utc, command, env) VALUES ('2025-01-01', 'archbench bench', '{}')")
    raw.execute("INSERT INTO cells (run_id, model, device, mode, batch, input, dtype, channels_last, compiled, threads, "
                "status, median_ms) VALUES (1, 'm', 'cpu', 'infer', 1, '3x8x8', 'fp32', 0, 1, 1, 'ok', 2.5)")
    raw.execute("INSERT INTO samples (cell_id, samples_ms) VALUES (1, ?)", (bytes(8),))
    raw.commit()
    raw.close()
    with Store.open(db_path) as store:
        (old,) = store.rows(1)
        assert (old.backend, old.compiled, old.samples_ms) == ("compile", True, (0.0,))
        base = dict(model="m", device="cpu", mode="infer", batch=1, input="3x8x8", dtype="fp32", threads=1)
        for backend in ("eager", "export", "onnxruntime"):  # one cell but for the backend: three rows, not one
            store.add_cell(1, ResultRow(**base, backend=backend, median_ms=1.0, samples_ms=(1.0,)))
        assert [r.backend for r in store.rows(1)] == ["compile", "eager", "export", "onnxruntime"]
    check = sqlite3.connect(db_path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 3  # 2 added profiles, 3 the backend key
    assert check.execute("PRAGMA foreign_key_check").fetchall() == []
    assert check.execute("SELECT count(*) FROM samples").fetchone()[0] == 4


# ------------------------------------------------------------------------------------------- report


def _row(backend: str, median: float, low: float, high: float, **more) -> ResultRow:
    return ResultRow(model="m", device="cpu", mode="infer", batch=8, input="3x8x8", dtype="fp32", threads=1,
                     backend=backend, n_samples=20, median_ms=median, ci_low_ms=low, ci_high_ms=high, ci_coverage=0.95,
                     **more)


def test_speedup_vs_eager_from_the_two_cis_and_the_numerics_flag_in_the_report():
    rows = [_row("eager", 2.0, 1.9, 2.1), _row("compile", 1.0, 0.95, 1.05, compile_s=12.0, max_abs_err=1e-6,
                                                 max_rel_err=2e-7),
            _row("onnxruntime", 0.5, 0.45, 0.55, max_rel_err=0.01, max_abs_err=0.05,
                 note=numerics_note(0.01, "fp32")),
            ResultRow(model="m", device="cpu", mode="infer", batch=8, input="3x8x8", dtype="fp32", threads=1,
                      backend="export", status="error", error="torch.export cannot export the model: X")]
    compile_, ort, export = backend_comparisons(rows)
    assert compile_.speedup_text == "×2.00 (1.81–2.21)"  # 2.0/1.0, 1.9/1.05, 2.1/0.95
    assert ort.speed.ratio == 4.0 and ort.numerics.startswith("numerics: output differs from eager by 0.01")
    assert export.speed is None
    text = "\n".join(backends_section(rows))
    assert "## Speed-up vs eager" in text
    assert "| m | compile | infer · b8 · 3x8x8 · cpu · fp32 | ×2.00 (1.81–2.21) | 12.0 | 1e-06 | 2e-07 | ok |" in text
    assert "| **numerics** |" in text
    assert "| error: torch.export cannot export the model: X |" in text
    assert backends_section(rows[:1]) == []


def test_a_study_grid_names_its_backends_and_round_trips():
    from archbench.errors import StudyError
    from archbench.study import study_from_dict, study_from_mapping

    study = study_from_mapping({"models": ["mnist-cnn"], "grid": {"backends": ["eager", "compile:max-autotune"],
                                                                  "cuda": {"backends": ["onnxruntime"]}}})
    assert study.grid.backends == ("eager", "compile:max-autotune")
    assert study.grid.for_device("cuda").backends == ("onnxruntime",)
    assert study_from_dict(study.to_dict()).grid == study.grid
    assert study_from_mapping({"models": ["mnist-cnn"]}).grid.backends is None  # options.compiled decides
    with pytest.raises(StudyError, match="study: grid.backends 'tvm' is not one of: eager, compile, export, onnxruntime"):
        study_from_mapping({"models": ["mnist-cnn"], "grid": {"backends": ["tvm"]}})
