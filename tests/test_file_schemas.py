"""Well-formed files of the wrong shape (issue 20, item 6): each is refused where it is read, through the real
CLI, with exit 2 and a message naming the file, the field and what was expected — never a traceback."""

from __future__ import annotations

import copy
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from archbench.results.store import Store
from archbench.rows import ResultRow

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "example-report"


def _refused(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr


def _report_folder(tmp_path: Path, payload=None, csv: bytes | None = None) -> Path:
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "results.csv").write_bytes(csv if csv is not None else (EXAMPLE / "results.csv").read_bytes())
    text = (EXAMPLE / "results.json").read_text() if payload is None else json.dumps(payload)
    (folder / "results.json").write_text(text)
    return folder


def _example() -> dict:
    return json.loads((EXAMPLE / "results.json").read_text())


def _set(payload: dict, path: tuple, value) -> dict:
    payload = copy.deepcopy(payload)
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return payload


# --------------------------------------------------------------------------------------------- results.json


def test_a_results_json_that_is_a_list_is_not_a_report(cli, tmp_path):
    folder = _report_folder(tmp_path, payload=[])
    _refused(cli("report", folder, "--out", tmp_path / "out"), f"{folder / 'results.json'}", "not an archbench report")


@pytest.mark.parametrize(("path", "value", "said"), [
    (("rows",), None, "rows: expected a list, got null"),
    (("rows", 0, "batch"), None, "rows[0].batch: expected a positive integer, got null"),
    (("rows", 0, "batch"), "8", "rows[0].batch: expected a positive integer, got '8'"),
    (("rows", 0, "mode"), 3, "rows[0].mode: expected one of infer, train, got 3"),
    (("rows", 0, "samples_ms"), {"a": 1}, "rows[0].samples_ms: expected a list"),
    (("study",), 7, "study: expected a study"),
    (("study", "grid"), None, "study.grid: expected a grid"),
    (("study", "grid", "batches"), [0], "study.grid.batches[0]: expected a positive integer, got 0"),
    (("study", "options", "precision"), 5, "study.options.precision: expected a fraction between 0 and 1, got 5"),
    (("model_stats", 0, "macs"), None, "model_stats[0].macs: expected an integer >= 0, got null"),
    (("models", 0), "wrn", "models[0]: expected a model"),
    (("environments", 0, "devices"), 5, "environments[0].devices: expected an object"),
    (("peaks_tflops",), [], "peaks_tflops: expected an object"),
    (("planned_cells",), None, "planned_cells: expected an integer >= 0, got null"),
    (("command",), 7, "command: expected a string, got 7"),
])
def test_a_results_json_key_of_the_wrong_type_is_named(cli, tmp_path, path, value, said):
    folder = _report_folder(tmp_path, payload=_set(_example(), path, value))
    _refused(cli("report", folder, "--out", tmp_path / "out"), f"{folder / 'results.json'}: {said}")


def test_diff_names_the_field_of_a_report_json_of_the_wrong_shape(cli, tmp_path):
    folder = _report_folder(tmp_path, payload=_set(_example(), ("rows", 3, "median_ms"), "fast"))
    _refused(cli("diff", folder, EXAMPLE), "rows[3].median_ms: expected a number or null, got 'fast'")


def test_a_json_nested_thousands_deep_is_refused(cli, tmp_path):
    folder = _report_folder(tmp_path)
    (folder / "results.json").write_text('{"format": "archbench-report", "x": ' + "[" * 3000 + "]" * 3000 + "}")
    _refused(cli("report", folder, "--out", tmp_path / "out"), str(folder / "results.json"), "nested")


# ------------------------------------------------------------------------------------------------ CSV


def test_a_results_csv_of_random_bytes_is_not_a_results_csv(cli, tmp_path):
    folder = _report_folder(tmp_path, csv=bytes(range(256)) * 8)
    _refused(cli("report", folder, "--out", tmp_path / "out"), str(folder / "results.csv"), "not an archbench results CSV")
    _refused(cli("diff", folder / "results.csv", EXAMPLE), str(folder / "results.csv"), "not an archbench results CSV")


@pytest.mark.parametrize("batch", ["0", "-3", "2.5"])
def test_a_csv_batch_that_is_not_a_positive_integer_names_its_line(cli, tmp_path, batch):
    lines = (EXAMPLE / "results.csv").read_text().splitlines(keepends=True)
    first = lines[1].split(",")
    first[3] = batch
    folder = _report_folder(tmp_path, csv="".join([lines[0], ",".join(first), *lines[2:]]).encode())
    _refused(cli("report", folder, "--out", tmp_path / "out"), f"{folder / 'results.csv'}:2:", "column 'batch'")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- store


def _store(tmp_path: Path, corruption: str) -> Path:
    db = tmp_path / "runs.db"
    with Store.open(db) as store:
        run = store.begin_run("archbench bench mnist-cnn", env={"torch": "2.14.1", "devices": {"cpu": "a cpu"}})
        for batch in (1, 8):
            store.add_cell(run, ResultRow("mnist-cnn", "cpu", "infer", batch, "1x28x28", "fp32", threads=2, n_samples=3,
                                          median_ms=float(batch), samples_ms=(1.0, 1.1, 0.9)))
        store.finish_run(run)
    with sqlite3.connect(db) as db_file:
        db_file.execute(corruption)
    return db


@pytest.mark.parametrize(("corruption", "command", "said"), [
    ("UPDATE runs SET env = '{not json'", "history", "run 1: env: not valid JSON"),
    ("UPDATE runs SET env = '[1, 2]'", "history", "run 1: env: expected an environment"),
    ("UPDATE samples SET samples_ms = x'0102030405' WHERE cell_id = 1", "report",
     "run 1: cell 1.samples_ms: expected float64 samples (a multiple of 8 bytes), got 5 bytes"),
    ("UPDATE cells SET batch = 'x' WHERE id = 2", "diff", "run 1: cell 2.batch: expected a positive integer, got 'x'"),
    ("UPDATE cells SET batch = 1.5 WHERE id = 2", "report", "run 1: cell 2.batch: expected a positive integer, got 1.5"),
    ("UPDATE cells SET compiled = 7 WHERE id = 1", "report", "run 1: cell 1.compiled: expected true or false, got 7"),
    ("UPDATE runs SET report = '{\"format\": \"archbench-report\", \"study\": []}'", "report",
     "run 1: report: study: expected a study"),
])
def test_a_store_with_contents_of_the_wrong_shape_names_run_and_field(cli, tmp_path, corruption, command, said):
    db = _store(tmp_path, corruption)
    args = {"history": ("history",), "report": ("report", "latest", "--out", tmp_path / "out"),
            "diff": ("diff", "latest", "latest")}[command]
    _refused(cli(*args, "--db", db), f"the results store '{db}', {said}")


# ----------------------------------------------------------------------------------- spec and study files


def test_a_spec_file_that_is_not_utf8_is_named(cli, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "cafe.toml").write_bytes('name = "cafe"\ndescription = "caf\xe9"\n'.encode("latin-1"))
    _refused(cli("bench", "mnist-cnn", "--specs", specs), f"{specs / 'cafe.toml'}: not UTF-8 text", "a spec file")


@pytest.mark.parametrize("nested", ["x = " + "[" * 3000 + "]" * 3000, "[executor." + ".".join(["a"] * 3000) + "]\nb = 1"])
def test_a_study_file_nested_thousands_deep_is_named(cli, tmp_path, nested):
    study = tmp_path / "deep.toml"
    study.write_text(f'models = ["mnist-cnn"]\n{nested}\n')
    _refused(cli("compare", "--study", study, "--out", tmp_path / "out"), f"{study}: nested", "a study file")


def test_a_study_file_that_is_not_utf8_is_named(cli, tmp_path):
    study = tmp_path / "latin.toml"
    study.write_bytes('title = "caf\xe9"\nmodels = ["mnist-cnn"]\n'.encode("latin-1"))
    _refused(cli("compare", "--study", study, "--out", tmp_path / "out"), f"{study}: not UTF-8 text")


# -------------------------------------------------------------------------------------- the files still read


def test_the_example_report_still_reads(cli, tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "example")
    result = cli("report", tmp_path / "example", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report.md").is_file()


def test_a_store_written_by_archbench_reads_back_exactly(tmp_path):
    db = _store(tmp_path, "SELECT 1")
    with Store.open(db, readonly=True) as store:
        rows = store.rows(1)
        assert [r.batch for r in rows] == [1, 8]
        assert rows[0].samples_ms == (1.0, 1.1, 0.9)
        assert store.run_info(1).env == {"torch": "2.14.1", "devices": {"cpu": "a cpu"}}
    assert os.path.getsize(db) > 0


def test_a_slurm_job_manifest_reads_back_every_field_it_was_written_with(tmp_path):
    """A detached run's manifest is read back through its schema, which drops keys it does not list: a
    resumed or collected run needs each job's unit file and cell keys, not only its job id."""
    from archbench.execute.slurm import append_manifest, read_manifest

    entries = [{"job_id": "41", "unit": str(tmp_path / "unit-0.pt"), "keys": [["cnn", "cpu", 1, [1, 28, 28]]]},
               {"job_id": "42", "unit": str(tmp_path / "unit-1.pt"), "keys": [["cnn", "cpu", 8, [1, 28, 28]]]}]
    for entry in entries:
        append_manifest(tmp_path, entry)
    assert read_manifest(tmp_path) == entries
