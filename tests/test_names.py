"""`NAME=REFERENCE` wherever a model goes on the command line: the name is what rows, titles and report
folders call the model; `summary` shows the reference as written; a name given to two models, or a name
without a reference, is a usage error naming it."""

from __future__ import annotations

import csv
import json
import textwrap

import pytest

from archbench.catalog.grammar import ModelReferenceError, split_name

FAST = ("--batch", "1", "--mode", "infer", "--input", "1x28x28", "--max-time", "0.1", "--precision", "0.2")

NET = textwrap.dedent("""
    import torch.nn as nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))
""")


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    """A folder holding ./net.py (one 1-channel conv and a linear layer: 40 + 50 = 90 parameters), as cwd."""
    (tmp_path / "net.py").write_text(NET, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("text, expected", [
    ("resnext-50", (None, "resnext-50")),
    ("tv:resnet50", (None, "tv:resnet50")),
    ("./nets/net.py:Net", (None, "./nets/net.py:Net")),
    ("mypkg.models:MyNet", (None, "mypkg.models:MyNet")),
    ("mine=./nets/net.py:Net", ("mine", "./nets/net.py:Net")),
    ("v2.1-wide=timm:resnet18", ("v2.1-wide", "timm:resnet18")),
    (" a = resnet50 ", ("a", "resnet50")),
])
def test_a_name_before_an_equals_sign_is_split_from_the_reference(text, expected):
    assert split_name(text) == expected


def test_a_name_without_a_reference_says_what_to_write():
    with pytest.raises(ModelReferenceError, match=r"'mine=' names a model 'mine' but gives no reference after '='"):
        split_name("mine=")


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_compare_names_rows_title_and_folder_by_the_names_given(cli, in_project):
    result = cli("compare", "mine=./net.py:Net", "tiny=mnist-cnn", *FAST)
    assert result.exit_code == 0, result.output
    folder = in_project / "reports" / "mine-vs-tiny"
    assert sorted(r["model"] for r in _rows(folder / "results.csv")) == ["mine", "tiny"]
    assert all(r["status"] == "ok" for r in _rows(folder / "results.csv"))
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# mine vs tiny\n")
    assert "archbench compare mine=./net.py:Net tiny=mnist-cnn " in report  # reproduces with the names
    counts = {m["name"]: m for m in json.loads((folder / "results.json").read_text())["models"]}
    assert set(counts) == {"mine", "tiny"}


def test_summary_shows_the_name_and_the_reference_as_written(cli, in_project):
    result = cli("summary", "mine=./net.py:Net", "--input", "1x28x28", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["model"], summary["reference"], summary["params_total"]) == ("mine", "./net.py:Net", 90)
    text = cli("summary", "mine=./net.py:Net", "--input", "1x28x28").stdout
    assert "reference   ./net.py:Net" in text and "model       mine" in text
    assert "archbench_file_" not in text  # the module archbench imported the file as is not the user's name


def test_bench_rows_carry_the_name(cli, in_project):
    out = in_project / "bench.csv"
    result = cli("bench", "small=mnist-cnn", *FAST, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [r["model"] for r in _rows(out)] == ["small"]


@pytest.mark.parametrize("models, said", [
    (("a=mnist-cnn", "a=./net.py:Net"), "two models are named 'a' (mnist-cnn and ./net.py:Net)"),
    (("mine=",), "'mine=' names a model 'mine' but gives no reference after '='"),
])
def test_a_bad_name_is_a_usage_error_naming_it(cli, in_project, models, said):
    result = cli("compare", *models, "mnist-cnn", *FAST)
    assert result.exit_code != 0
    assert said in result.output and "Traceback" not in result.output
