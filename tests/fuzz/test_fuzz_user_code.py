"""Fuzz: model files of the user's own, with a fault in one place — at import, in ``__init__``, in a
factory, in ``forward`` or in an input factory (``--inputs``) — run by `summary` and `bench`.

Exit codes (README, "Bring your own model" and "Errors"): code that fails to load or build is bad input,
exit 2, and the message names the file; a forward that fails is a model that does not run on the input,
exit 1 (`summary`; `bench`: every cell failed). A ``sys.exit`` in user code is such a failure too, never
archbench's exit (issue 20: ``sys.exit(0)`` in a forward exited 0 with nothing measured). An input factory
that fails, takes the wrong arguments or returns nothing usable is refused (1 or 2), never silently
replaced by the default input. A forward that returns something other than a tensor may be fine for
inference: 0 or 1. ``os._exit`` is not generated: it ends any process at once, in-process archbench
included (the README says which isolation exists for such code); no fault case is a valid file except
``none``, which must exit 0.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import Case, fuzz_settings, run_case

pytestmark = pytest.mark.fuzz  # in the default run; pytest -m fuzz runs the fuzzer alone (see tests/fuzz/harness.py)

TEMPLATE = '''\
import sys
import torch
from torch import nn

{at_import}

class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        {at_init}
        self.fc = nn.Linear(12, width)

    def forward(self, x):
        {at_forward}
        return self.fc(x.flatten(1))


def build(width=4):
    {at_factory}
    return Net(width)


{inputs}
'''
INPUTS = {
    "good": "def make_inputs(batch, input_shape, dtype, device):\n    return torch.randn(batch, *input_shape)\n",
    "no-arguments": "def make_inputs():\n    return torch.randn(1, 3, 2, 2)\n",
    "returns-none": "def make_inputs(batch, input_shape, dtype, device):\n    return None\n",
    "returns-text": "def make_inputs(batch, input_shape, dtype, device):\n    return 'images'\n",
    "wrong-shape": "def make_inputs(batch, input_shape, dtype, device):\n    return torch.randn(batch, 5)\n",
    "raises": "def make_inputs(batch, input_shape, dtype, device):\n    raise ValueError('no data here')\n",
    "exits": "def make_inputs(batch, input_shape, dtype, device):\n    sys.exit(0)\n",
    "not-callable": "make_inputs = 42\n",
}
RAISES = ["raise ValueError('fuzz')", "raise RuntimeError('fuzz')", "raise GeneratorExit", "raise StopIteration",
          "raise MemoryError", "raise RecursionError", "raise TypeError", "assert False, 'fuzz'", "1 / 0",
          "raise SystemExit(2)", "sys.exit(0)", "sys.exit(1)", "sys.exit(3)", "sys.exit('bye')", "sys.exit(None)",
          "raise Exception", "raise BaseException('fuzz')"]
RETURNS = ["return None", "return 42", "return 'text'", "return []", "return {'a': 1}", "return (None, x)",
           "return [x.sum()]"]
_names = itertools.count()


@st.composite
def user_code_cases(draw) -> Case:
    where = draw(st.sampled_from(["none", "import", "init", "factory", "forward", "forward-returns", "inputs"]))
    fault = draw(st.sampled_from(RETURNS if where == "forward-returns" else RAISES))
    slots = {"at_import": "", "at_init": "pass", "at_forward": "pass", "at_factory": "pass", "inputs": ""}
    inputs = None
    if where in ("import", "init", "factory"):
        slots[f"at_{where}"] = fault
    elif where in ("forward", "forward-returns"):
        slots["at_forward"] = fault
    elif where == "inputs":
        inputs = draw(st.sampled_from(sorted(INPUTS)))
        slots["inputs"] = INPUTS[inputs]
    stem = f"usernet{next(_names)}"
    attr = "build" if where == "factory" else draw(st.sampled_from(["Net", "build"]))
    command = draw(st.sampled_from(["summary", "summary", "summary", "bench"]))
    argv = [command, f"./{stem}.py:{attr}", "--input", "3x2x2"]
    if command == "summary":
        argv += ["--depth", "1"]
    else:
        argv += ["--mode", draw(st.sampled_from(["infer", "train"])), "--batch", "2", "--max-time", "0.05",
                 "--out", "{dir}/b.csv"]
    if inputs is not None:
        argv += ["--inputs", f"./{stem}.py:make_inputs"]
    exits, names = _expected(where, inputs)
    why = f"{where}: {inputs or fault}"
    return Case(argv, exits, why, files={f"{stem}.py": TEMPLATE.format(**slots).encode()}, names=names)


def _expected(where: str, inputs: str | None) -> tuple[frozenset[int], tuple[str, ...]]:
    if where == "none" or inputs == "good":
        return frozenset({0}), ()
    if where in ("import", "init", "factory"):
        return frozenset({2}), (".py",)
    if where == "forward":
        return frozenset({1}), ()
    if where == "forward-returns":
        return frozenset({0, 1}), ()
    return frozenset({1, 2}), ()


@fuzz_settings(15)
@given(case=user_code_cases())
def test_user_model_files(cli, tmp_path, case):
    run_case(cli, case, tmp_path)
