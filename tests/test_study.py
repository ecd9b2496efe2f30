"""Study files: the default study, a valid custom one, and bad files that fail with the file and the
key named (exit code 2 through the CLI, before anything is measured)."""

from __future__ import annotations

import pytest

from archbench.errors import StudyError
from archbench.study import (
    Study,
    adhoc_study,
    default_study_path,
    find_study,
    load_study,
    resolve_models,
    study_from_dict,
)

GOOD = """
title = "Tiny"
models = ["mnist-cnn", "wrn-40-1"]
reference = "wrn-40-1"

[grid]
devices = "cpu"
inputs = ["3x32x32"]
batches = [1, 2]
modes = ["infer"]
dtypes = ["fp32"]

[grid.cuda]
batches = [1, 64]

[options]
max_time_s = 0.5
precision = 0.05
min_samples = 3
threads = 1
"""


def write(tmp_path, text, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_study_is_the_one_the_issue_describes():
    study = load_study(default_study_path())
    assert study.name == "default"
    assert study.models == ("wrn-40-10", "resnext-50") and study.reference == "wrn-40-10"
    assert study.grid.devices == ("auto",)
    assert study.grid.inputs == ((3, 32, 32), (3, 64, 64))
    assert study.grid.batches == (1, 8) and study.grid.modes == ("infer", "train") and study.grid.dtypes == ("fp32",)
    assert study.grid.for_device("cuda").batches == (1, 8, 32, 128)  # larger batches on a GPU
    assert study.grid.for_device("cpu").batches == (1, 8)
    assert study.options.measure.max_time_s is not None and study.options.measure.min_samples >= 5


def test_a_study_file_loads_and_round_trips(tmp_path):
    study = load_study(write(tmp_path, GOOD))
    assert study.name == "tiny" and study.title == "Tiny" and study.reference == "wrn-40-1"
    assert study.grid.batches == (1, 2) and study.grid.inputs == ((3, 32, 32),)
    measure = study.options.measure
    assert (measure.max_time_s, measure.precision, measure.min_samples, study.options.threads) == (0.5, 0.05, 3, 1)
    assert study_from_dict(study.to_dict()) == study
    assert [s.name for s in resolve_models(study)] == ["mnist-cnn", "wrn-40-1"]


def test_find_study_by_name_or_path(tmp_path):
    assert find_study("default") == default_study_path()
    path = write(tmp_path, GOOD)
    assert find_study(str(path)) == path


@pytest.mark.parametrize(
    "old, new, key",
    [
        ('title = "Tiny"', 'title = "Tiny"\nmodel = ["x"]', "unknown key 'model'"),
        ("batches = [1, 2]", "batch = [1, 2]", "unknown key 'grid.batch'. Did you mean 'grid.batches'?"),
        ("max_time_s = 0.5", "max_time = 0.5", "unknown key 'options.max_time'"),
        ("batches = [1, 2]", "batches = [1, 0]", "grid.batches: 0 is not a positive integer"),
        ("batches = [1, 64]", 'batches = [1, "64"]', "grid.cuda.batches: '64' is not a positive integer"),
        ('inputs = ["3x32x32"]', 'inputs = ["3x32"]', "grid.inputs '3x32' is not an input shape"),
        ('modes = ["infer"]', 'modes = ["fit"]', "grid.modes: 'fit' is not one of infer, train"),
        ('devices = "cpu"', 'devices = "tpu"', "grid.devices value 'tpu' is not a device: expected cpu, cuda or cuda:N"),
        ("precision = 0.05", "precision = 5", "options.precision: 5 is not a fraction"),
        ('reference = "wrn-40-1"', 'reference = "resnet18"', "reference: 'resnet18' is not one of the study's models"),
        ('[grid.cuda]', '[grid.tpu]', "unknown key 'grid.tpu'"),
    ],
)
def test_bad_study_files_name_the_file_and_the_key(tmp_path, old, new, key):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert key in message


def test_unknown_model_names_the_file_and_the_models_key(tmp_path):
    study = load_study(write(tmp_path, GOOD.replace('"mnist-cnn"', '"mnist-cn"')))
    with pytest.raises(StudyError) as info:
        resolve_models(study)
    assert str(info.value).startswith(f"{study.path}: models: unknown model 'mnist-cn'. Did you mean: mnist-cnn")


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "models = [\n")
    with pytest.raises(StudyError, match=f"^{path}: not valid TOML"):
        load_study(path)


def test_adhoc_study_names_its_report_after_the_models():
    study = adhoc_study(["wrn-40-1", "mnist-cnn"])
    assert isinstance(study, Study)
    assert (study.name, study.reference, study.title) == ("wrn-40-1-vs-mnist-cnn", "wrn-40-1", "wrn-40-1 vs mnist-cnn")


@pytest.mark.parametrize(
    "replace, key",
    [
        (('"mnist-cnn"', '"no-such-net"'), "models: unknown model 'no-such-net'"),
        (("batches = [1, 2]", "batches = [-1]"), "grid.batches: -1 is not a positive integer"),
        (('title = "Tiny"', 'title = "Tiny"\ncolour = "red"'), "unknown key 'colour'"),
    ],
)
def test_cli_bad_study_file_is_exit_2_naming_file_and_key(cli, tmp_path, replace, key):
    path = write(tmp_path, GOOD.replace(*replace))
    result = cli("compare", "--study", path, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert f"error: {path}: " in result.stderr and key in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing started
