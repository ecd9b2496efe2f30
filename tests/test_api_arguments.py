"""Every public function of the Python API checks its arguments before anything runs: a wrong type or value
is archbench's own error (an ``ArchbenchError`` that is also a ``TypeError``/``ValueError``) naming the
argument — never an internal ``TypeError``, ``KeyError`` or ``AttributeError`` from deep inside, and never
a wrong value silently accepted (``batch=0``, ``out_dir=""``, which meant the working directory).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from torch import nn

import archbench
from archbench.arguments import ArgumentError, ArgumentTypeError


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


VALID = {  # arguments that would run: each case below replaces one of them
    "summarize": {"model": Tiny(), "input_size": (3, 8, 8)},
    "count": {"model": Tiny(), "input_size": (3, 8, 8)},
    "measure": {"fn": lambda: None},
    "bench": {"model": Tiny(), "input_size": (3, 8, 8)},
    "compare": {"models": {"a": Tiny()}, "out_dir": "unused"},
}

TYPE, VALUE = ArgumentTypeError, ArgumentError
CASES = [  # (function, argument, value, error class, what the message names)
    ("summarize", "model", 42, TYPE, "model"),
    ("summarize", "model", None, TYPE, "model"),
    ("summarize", "model", [Tiny()], TYPE, "model"),
    ("summarize", "model", "", VALUE, "model"),
    ("summarize", "input_size", 42, TYPE, "input_size"),
    ("summarize", "input_size", (3, 32), VALUE, "input_size"),
    ("summarize", "input_size", (3, 0, 32), VALUE, "input_size[1]"),
    ("summarize", "input_size", (3, "32", 32), TYPE, "input_size[1]"),
    ("summarize", "input_size", (3, 32.0, 32), TYPE, "input_size[1]"),
    ("summarize", "input_size", "3x", VALUE, "input_size"),
    ("summarize", "batch", 0, VALUE, "batch"),
    ("summarize", "batch", -1, VALUE, "batch"),
    ("summarize", "batch", "8", TYPE, "batch"),
    ("summarize", "batch", 1.5, TYPE, "batch"),
    ("summarize", "batch", True, TYPE, "batch"),
    ("summarize", "batch", None, TYPE, "batch"),
    ("summarize", "batch", 2**63, VALUE, "batch"),
    ("summarize", "device", 42, TYPE, "device"),
    ("summarize", "device", "gpu", VALUE, "device"),
    ("summarize", "device", "cpu:1", VALUE, "device"),
    ("summarize", "dtype", "fp64", VALUE, "dtype"),
    ("summarize", "dtype", None, TYPE, "dtype"),
    ("summarize", "depth", -1, VALUE, "depth"),
    ("summarize", "depth", "3", TYPE, "depth"),
    ("summarize", "name", 42, TYPE, "name"),
    ("summarize", "name", " ", VALUE, "name"),
    ("count", "model", 42, TYPE, "model"),
    ("count", "input_size", (1,), VALUE, "input_size"),
    ("count", "batch", 0, VALUE, "batch"),
    ("count", "device", None, TYPE, "device"),
    ("count", "dtype", "fp64", VALUE, "dtype"),
    ("count", "name", 3, TYPE, "name"),
    ("measure", "fn", 42, TYPE, "fn"),
    ("measure", "fn", None, TYPE, "fn"),
    ("measure", "device", "tpu", VALUE, "device"),
    ("measure", "options", 42, TYPE, "options"),
    ("measure", "options", {"precision": 0.1}, TYPE, "options"),
    ("measure", "sampler", 3, TYPE, "sampler"),
    ("measure", "clock", "time", TYPE, "clock"),
    ("bench", "model", 42, TYPE, "model"),
    ("bench", "model", {}, VALUE, "model"),
    ("bench", "model", {1: Tiny()}, TYPE, "model key 1"),
    ("bench", "model", {"a": 42}, TYPE, "model['a']"),
    ("bench", "input_size", (3,), VALUE, "input_size"),
    ("bench", "batches", 8, TYPE, "batches"),
    ("bench", "batches", [], VALUE, "batches"),
    ("bench", "batches", [0], VALUE, "batches[0]"),
    ("bench", "batches", [1, "8"], TYPE, "batches[1]"),
    ("bench", "batches", "1,8", TYPE, "batches"),
    ("bench", "modes", "infer", TYPE, "modes"),
    ("bench", "modes", ["eval"], VALUE, "modes[0]"),
    ("bench", "modes", None, TYPE, "modes"),
    ("bench", "dtypes", ["fp64"], VALUE, "dtypes[0]"),
    ("bench", "dtypes", None, TYPE, "dtypes"),
    ("bench", "device", "cuda:x", VALUE, "device"),
    ("bench", "options", 42, TYPE, "options"),
    ("bench", "options", None, TYPE, "options"),
    ("bench", "threads", 0, VALUE, "threads"),
    ("bench", "threads", "4", TYPE, "threads"),
    ("bench", "threads", 2**63, VALUE, "threads"),
    ("bench", "channels_last", "yes", TYPE, "channels_last"),
    ("bench", "compiled", 1, TYPE, "compiled"),
    ("bench", "make_inputs", 42, TYPE, "make_inputs"),
    ("bench", "out_csv", 42, TYPE, "out_csv"),
    ("bench", "out_csv", "", VALUE, "out_csv"),
    ("bench", "interleave", "yes", TYPE, "interleave"),
    ("compare", "interleave", 1, TYPE, "interleave"),
    ("compare", "models", 42, TYPE, "models"),
    ("compare", "models", "resnet50", TYPE, "models"),
    ("compare", "models", [], VALUE, "models"),
    ("compare", "models", {}, VALUE, "models"),
    ("compare", "models", {"a": 42}, TYPE, "models['a']"),
    ("compare", "models", [Tiny(), Tiny()], VALUE, "models"),
    ("compare", "inputs", [(3,)], VALUE, "inputs[0]"),
    ("compare", "inputs", (3, 32, 32), TYPE, "inputs[0]"),
    ("compare", "batches", 0, TYPE, "batches"),
    ("compare", "modes", ["x"], VALUE, "modes[0]"),
    ("compare", "dtypes", "fp32", TYPE, "dtypes"),
    ("compare", "devices", "cpu", TYPE, "devices"),
    ("compare", "devices", ["gpu"], VALUE, "devices[0]"),
    ("compare", "options", {}, TYPE, "options"),
    ("compare", "out_dir", "", VALUE, "out_dir"),
    ("compare", "out_dir", 42, TYPE, "out_dir"),
    ("compare", "title", 3, TYPE, "title"),
    ("compare", "reference", "zzz", VALUE, "reference"),
    ("compare", "reference", 5, TYPE, "reference"),
    ("compare", "force", "yes", TYPE, "force"),
]


@pytest.mark.parametrize(("function", "argument", "value", "error", "named"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]!r:.20}" for c in CASES])
def test_a_wrong_argument_is_archbenchs_error_naming_it(tmp_path, monkeypatch, function, argument, value, error, named):
    monkeypatch.chdir(tmp_path)  # nothing may be written anyway
    with pytest.raises(error) as caught:
        getattr(archbench, function)(**{**VALID[function], argument: value})
    assert isinstance(caught.value, archbench.ArchbenchError)
    assert isinstance(caught.value, TypeError if error is TYPE else ValueError)
    assert str(caught.value).startswith(f"argument {named}"), str(caught.value)
    assert list(Path(tmp_path).iterdir()) == []


def test_every_public_function_and_argument_is_in_the_table():
    """A new argument of a public function needs cases here (what it must refuse)."""
    import inspect

    covered = {(c[0], c[1]) for c in CASES}
    free = {("summarize", "input_data"), ("count", "inputs"), ("bench", "listener")}  # any object is valid
    for function in VALID:
        for argument in inspect.signature(getattr(archbench, function)).parameters:
            assert (function, argument) in covered | free, f"{function}({argument}=...) has no wrong-value case"


@pytest.mark.parametrize(("options", "named"), [
    ({"precision": "0.1"}, "precision"),
    ({"precision": math.nan}, "precision"),
    ({"max_time_s": "8"}, "max_time_s"),
    ({"min_samples": 2.5}, "min_samples"),
    ({"max_samples": None}, "max_samples"),
    ({"warmup": 1}, "warmup"),
])
def test_measure_options_check_their_types(options, named):
    with pytest.raises(ArgumentError, match=rf"^argument {named}:"):
        archbench.MeasureOptions(**options)


def test_a_shape_may_be_any_sequence_or_a_cxhxw_string():
    assert archbench.count(Tiny(), input_size="3x8x8").macs == archbench.count(Tiny(), input_size=[3, 8, 8]).macs == 2 * 36 * 27
