"""User code outside the happy path, through the real CLI and API: a model (forward, ``__init__``, its module
at import) or an input factory that calls ``sys.exit`` or raises ``GeneratorExit``; factories that raise,
take no arguments or return ``None``; references to things that are not models; spec widths torch refuses;
and a worker that ``os._exit``\\ s. Each gets a located message and its exit code, never a traceback and
never the user's exit code.

User code is real: files written to the test's temporary folder and imported from there.
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import pytest

NETS = '''
import sys

import torch
from torch import nn


class Ok(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


class ExitZero(Ok):
    def forward(self, x):
        sys.exit(0)  # EXIT-ZERO


class ExitThree(Ok):
    def forward(self, x):
        sys.exit(3)  # EXIT-THREE


class Generator(Ok):
    def forward(self, x):
        raise GeneratorExit  # GENERATOR


class Inner(nn.Module):
    def forward(self, x):
        sys.exit("bye")  # EXIT-INNER


class Nested(Ok):
    def __init__(self):
        super().__init__()
        self.inner = Inner()

    def forward(self, x):
        return self.inner(self.conv(x))


class ExitInInit(nn.Module):
    def __init__(self):
        super().__init__()
        sys.exit(3)  # EXIT-INIT


class Interrupted(Ok):
    def forward(self, x):
        raise KeyboardInterrupt


def raising(batch, input_shape, dtype, device):
    raise ValueError("no data for this shape")  # FACTORY-RAISES


def no_arguments():
    return torch.randn(1, 3, 8, 8)


def returns_none(batch, input_shape, dtype, device):
    return None


def exits(batch, input_shape, dtype, device):
    sys.exit(5)  # FACTORY-EXITS
'''


@pytest.fixture
def nets(tmp_path, monkeypatch) -> Path:
    """``nets.py`` in a fresh folder (the working directory): a file imported once per test."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return path


def line_of(path: Path, marker: str) -> str:
    """``nets.py:N``, N the line holding ``# marker``."""
    number = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if f"# {marker}" in line)
    return f"{path.name}:{number}"


def assert_clean(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert "error:" in result.stderr
    return " ".join(result.stderr.split())


# ------------------------------------------------------------------------------------- exits (item 3)


@pytest.mark.parametrize(("attr", "marker", "said"), [
    ("ExitZero", "EXIT-ZERO", "called sys.exit(0)"),
    ("ExitThree", "EXIT-THREE", "called sys.exit(3)"),
    ("Generator", "GENERATOR", "raised GeneratorExit"),
])
def test_a_forward_that_exits_is_a_located_model_failure(cli, nets, attr, marker, said):
    message = assert_clean(cli("summary", f"./nets.py:{attr}", "--input", "3x8x8"), 1)
    assert f"the model's forward {said} at {line_of(nets, marker)}" in message
    assert "raise an exception instead" in message


def test_an_exit_inside_a_submodule_names_that_module(cli, nets):
    message = assert_clean(cli("summary", "./nets.py:Nested", "--input", "3x8x8"), 1)
    assert "`inner` (Inner)" in message
    assert f"called sys.exit('bye') at {line_of(nets, 'EXIT-INNER')}" in message


def test_an_init_or_a_module_that_exits_is_code_that_fails_to_build_or_load(cli, nets):
    message = assert_clean(cli("summary", "./nets.py:ExitInInit"), 2)
    assert message.startswith(f"error: {line_of(nets, 'EXIT-INIT')}: model './nets.py:ExitInInit'")
    assert "SystemExit: sys.exit(3) was called" in message

    (nets.parent / "leaves.py").write_text("import sys\n\nsys.exit(4)\n")
    for reference in ("./leaves.py:Net", "leaves:Net"):
        message = assert_clean(cli("summary", reference), 2)
        assert message.startswith("error: leaves.py:3: ") and "sys.exit(4) was called" in message


def test_ctrl_c_in_a_forward_still_interrupts(cli, nets):
    result = cli("summary", "./nets.py:Interrupted", "--input", "3x8x8")
    assert result.exit_code == 130  # Ctrl-C, not a model failure (1)


def test_a_cell_whose_forward_exits_is_an_error_row(nets):
    from archbench import MeasureOptions
    from archbench.catalog.refs import resolve_model
    from archbench.sweep.cell_measure import measure_cell
    from archbench.sweep.cells import plan_cells

    for attr, marker in (("ExitThree", "EXIT-THREE"), ("Generator", "GENERATOR")):
        (cell,) = plan_cells([resolve_model(f"./nets.py:{attr}")], ["cpu"], [1], [(3, 8, 8)], ["infer"], ["fp32"],
                             False, False, 1)
        row = measure_cell(cell, MeasureOptions(max_time_s=0.1, min_samples=1))
        assert row.status == "error" and f"at {line_of(nets, marker)}" in row.error


@pytest.mark.slow
def test_a_sweep_records_an_exiting_forward_as_an_error_row_and_goes_on(cli, nets, tmp_path):
    out = tmp_path / "rows.csv"
    result = cli("bench", "./nets.py:ExitThree", "./nets.py:Ok", "--input", "3x8x8", "--mode", "infer",
                 "--max-time", "0.2", "--out", out, "--no-db")
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in csv.DictReader(out.open())}
    assert rows["./nets.py:Ok"]["status"] == "ok"
    assert rows["./nets.py:ExitThree"]["status"] == "error"
    assert f"called sys.exit(3) at {line_of(nets, 'EXIT-THREE')}" in rows["./nets.py:ExitThree"]["error"]


def test_the_api_raises_model_run_error_for_an_exiting_forward(nets):
    import archbench
    from archbench.catalog.loading import load_model_object

    with pytest.raises(archbench.ModelRunError, match=r"called sys.exit\(0\) at nets.py:\d+"):
        archbench.count(load_model_object("./nets.py:ExitZero")(), input_size=(3, 8, 8))


@pytest.mark.slow
def test_a_worker_whose_model_calls_os_exit_becomes_error_rows(cli, tmp_path, monkeypatch):
    """``os._exit`` cannot be caught in a process: with ``--workers`` the worker dies, not the run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hard.py").write_text(textwrap.dedent('''
        import os
        from torch import nn

        class HardExit(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 2, 3)

            def forward(self, x):
                if x.device.type != "meta" and not self.training:  # when timed, not when counted
                    os._exit(0)
                return self.conv(x).mean((2, 3))

        class Ok(HardExit):
            def forward(self, x):
                return self.conv(x).mean((2, 3))
    '''))
    result = cli("compare", "./hard.py:HardExit", "./hard.py:Ok", "--input", "3x8x8", "--batch", "1", "--mode",
                 "infer", "--max-time", "0.2", "--workers", "2", "--out", tmp_path / "rep", "--no-db")
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in csv.DictReader((tmp_path / "rep" / "results.csv").open())}
    assert rows["./hard.py:Ok"]["status"] == "ok"
    assert rows["./hard.py:HardExit"]["status"] == "error"
    assert "exited with code 0 while measuring this cell" in rows["./hard.py:HardExit"]["error"]


# ------------------------------------------------------------------- references and factories (item 7)


def test_a_factory_that_raises_is_located(cli, nets):
    message = assert_clean(cli("summary", "./nets.py:Ok", "--input", "3x8x8", "--inputs", "./nets.py:raising"), 2)
    assert message.startswith(f"error: {line_of(nets, 'FACTORY-RAISES')}: input factory")
    assert "raised ValueError: no data for this shape" in message
    assert "make_inputs(1, (3, 8, 8), 'fp32', 'cpu')" in message


def test_a_factory_that_exits_is_located(cli, nets):
    message = assert_clean(cli("summary", "./nets.py:Ok", "--input", "3x8x8", "--inputs", "./nets.py:exits"), 2)
    assert message.startswith(f"error: {line_of(nets, 'FACTORY-EXITS')}: input factory")
    assert "sys.exit(5) was called" in message


def test_a_factory_without_the_four_arguments_is_refused_before_anything_runs(cli, nets):
    message = assert_clean(cli("summary", "./nets.py:Ok", "--inputs", "./nets.py:no_arguments"), 2)
    assert "takes no_arguments()" in message
    assert "make_inputs(batch, input_shape, dtype, device)" in message


def test_a_factory_returning_none_is_not_replaced_by_default_images(cli, nets):
    message = assert_clean(cli("summary", "./nets.py:Ok", "--input", "3x8x8", "--inputs", "./nets.py:returns_none"), 2)
    assert "returned None: expected a tensor, a tuple of positional arguments or a dict of keyword arguments" in message


@pytest.mark.slow
def test_the_api_checks_make_inputs_as_the_cli_does(nets):
    import archbench
    from archbench.catalog.loading import load_model_object

    net = load_model_object("./nets.py:Ok")()
    with pytest.raises(archbench.SpecError, match=r"takes <lambda>\(\): it must take the four arguments"):
        archbench.bench(net, (3, 8, 8), make_inputs=lambda: None)
    rows = archbench.bench(net, (3, 8, 8), modes=("infer",), make_inputs=lambda b, s, d, dev: None,
                           options=archbench.MeasureOptions(max_time_s=0.1, min_samples=1))
    assert [r.status for r in rows] == ["error"] and "returned None" in rows[0].error


@pytest.mark.parametrize("reference", ["os:system", "math:sqrt", "builtins:print"])
def test_a_builtin_function_is_not_a_model(cli, reference):
    message = assert_clean(cli("summary", reference), 2)
    assert f"'{reference}' is a built-in function" in message
    assert len(message) < 700  # a module with hundreds of names lists a few


def test_an_api_class_whose_init_raises_is_located(tmp_path):
    import archbench

    class Broken:
        def __init__(self):
            raise ValueError("width must be even")

    with pytest.raises(archbench.SpecError, match=r"test_user_code.py:\d+: model 'Broken': Broken raised ValueError"):
        archbench.count(Broken, input_size=(3, 8, 8))


@pytest.mark.parametrize(("setting", "code", "said"), [
    ("num_classes=-1", 2, "cannot be built with {'num_classes': -1}: RuntimeError: Trying to create tensor with "
                          "negative dimension"),
    # 3.4 PB: refused by the resource bound before anything is built (archbench.resources)
    ("num_classes=10000000000000", 2, "does not fit in this machine's memory"),
])
def test_spec_widths_torch_refuses(cli, setting, code, said):
    message = assert_clean(cli("summary", "mnist-cnn", "--set", setting), code)
    assert said in message
