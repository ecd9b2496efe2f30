"""The "Reproduce with" line of a report made by the Python API is Python that runs: run in a fresh
interpreter it measures the same cells under the same names."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from archbench.timing.options import MeasureOptions


def _cells(folder):
    with open(folder / "results.csv", newline="", encoding="utf-8") as fh:
        return sorted((r["model"], r["device"], r["mode"], r["batch"], r["input"], r["status"]) for r in csv.DictReader(fh))


@pytest.mark.slow
def test_the_api_reproduce_line_runs_and_measures_the_same_cells(tmp_path):
    import archbench

    options = MeasureOptions(precision=0.2, max_time_s=0.1)
    result = archbench.compare({"small": "mnist-cnn", "lenet": "mnist-cnn"}, inputs=[(1, 28, 28)], batches=[1],
                               modes=["infer"], options=options, out_dir=tmp_path / "first", reference="lenet")
    command = result.data.command
    assert command == ("import archbench; archbench.compare({'small': 'mnist-cnn', 'lenet': 'mnist-cnn'}, "
                       "inputs=[(1, 28, 28)], batches=[1], modes=['infer'], dtypes=['fp32'], devices=['cpu'], "
                       "reference='lenet', options=archbench.MeasureOptions(precision=0.2, max_time_s=0.1))")
    report = (tmp_path / "first" / "report.md").read_text(encoding="utf-8")
    assert f"```python\n{command}\n```" in report

    rerun = subprocess.run([sys.executable, "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    (again,) = (tmp_path / "reports").glob("small-vs-lenet*")
    assert _cells(again) == _cells(tmp_path / "first")
    assert all(cell[-1] == "ok" for cell in _cells(again))


def test_an_importable_class_or_factory_is_passed_by_reference_and_an_instance_by_its_class():
    import torchvision
    from torch import nn

    from archbench.api import _model_code
    from archbench.catalog.refs import resolve_model

    reference = _model_code(torchvision.models.resnet18)
    assert reference == "'torchvision.models.resnet:resnet18'"
    assert resolve_model(reference.strip("'")).builder == "torchvision.models.resnet:resnet18"  # it resolves
    assert _model_code(nn.Linear(2, 2)) == "<your Linear object>"
