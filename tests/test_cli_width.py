"""What a person sees in an 80-column terminal (a default pty, a split pane) and at 200: every table the CLI
prints fits the width, and no number is ever cut (rich would cut a cell to `1,2…`; archbench drops the least
needed columns, shortens long names in the middle, stacks a grid that is too wide, or folds free text)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from rich.console import Console
from test_diff import runs  # noqa: F401 - the fixture: two report folders with a regression
from test_report import data  # noqa: F401 - the fixture: a two-model report with failures

from archbench.cli import _common
from archbench.results.store import RunInfo

WIDTHS = (80, 200)
LONG_REF = "./examples/research/architectures/mynet_variants.py:MyNetWithSqueezeExcitation"


def rendered(renderable, width: int) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115 - recorded, not shown
    console.print(renderable)
    return console.export_text()


def assert_fits(text: str, width: int) -> None:
    assert max(len(line) for line in text.splitlines()) <= width, text
    assert not re.search(r"\d…|…\d", text), text  # a number cut mid-way


@pytest.mark.parametrize("width", WIDTHS)
def test_bench_table_fits_and_keeps_every_number_whole(data, width):  # noqa: F811 - the imported fixture
    from archbench.cli.bench import rows_table

    rows = [dataclasses.replace(data.rows[0], model=LONG_REF), *data.rows]
    text = rendered(rows_table(rows, "archbench bench: 9 of 9 cells", width=width), width)
    assert_fits(text, width)
    assert "median" in text and "status" in text and "oom" in text, text
    if width == 200:
        assert LONG_REF in text and "IQR" in text  # room for everything: nothing shortened or dropped
    else:
        assert "./exampl" in text and "Excitation" in text  # both ends of the reference kept


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_summary_fits_stacking_a_grid_too_wide(data, width, monkeypatch, capsys):  # noqa: F811
    from archbench.cli.compare import architecture_rich_table, print_summary

    assert_fits(rendered(architecture_rich_table(data, width=width), width), width)
    monkeypatch.setattr(_common.out, "width", width)
    capsys.readouterr()
    print_summary(data)
    text = capsys.readouterr().out
    assert_fits(text, width)
    assert "10.0" in text and "9.50–10.7" in text  # the wide model's first cell: its median and CI, whole


@pytest.mark.parametrize("width", WIDTHS)
def test_history_fits_and_shortens_a_long_command_in_the_middle(width, tmp_path):
    from archbench.cli.history import history_table

    command = f"archbench compare {LONG_REF} resnext-50 --input 3x32x32 --batch 1,8,32 --out reports/mine"
    run = RunInfo(12, "2026-12-03T10:00:00+00:00", "2026-12-03T10:05:00+00:00", command, "", None, 12,
                  {"torch": "2.14.1+cu130"}, "0123456789abcdef", 12, 11, (LONG_REF, "resnext-50"), ("cpu",))
    text = rendered(history_table([run], tmp_path / "archbench.db", width=width), width)
    assert_fits(text, width)
    lines_of_run = [line for line in text.splitlines() if line.strip()]
    assert len(lines_of_run) <= 8  # the command does not wrap over a dozen lines


@pytest.mark.parametrize("width", WIDTHS)
def test_list_and_diff_fit(cli, runs, width, monkeypatch):  # noqa: F811 - the imported fixture
    monkeypatch.setattr(_common.out, "width", width)
    listed = cli("list", "wrn-*")
    assert listed.exit_code == 0
    assert_fits(listed.stdout, width)
    base, new = runs
    diffed = cli("diff", base, new)
    assert diffed.exit_code == 1
    assert_fits(diffed.stdout, width)
    assert "%" in diffed.stdout
