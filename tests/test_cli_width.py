"""What a person sees in an 80-column terminal (a default pty, a split pane) and at 200: every table the CLI
prints fits the width, and no number is ever cut (rich would cut a cell to `1,2…`; archbench drops the least
needed columns, shortens long names in the middle, stacks a grid that is too wide, or folds free text)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
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


class _LongNamedBlocks(torch.nn.Module):
    """Layers deep enough and named long enough that the summary's layer table is wider than 80 columns."""

    def __init__(self):
        super().__init__()
        self.feature_extractor_backbone = torch.nn.Sequential(
            torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.BatchNorm2d(64)),
            torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1)))
        self.classification_head_projection = torch.nn.Linear(64, 1000)

    def forward(self, x):
        return self.classification_head_projection(self.feature_extractor_backbone(x).flatten(1))


@pytest.mark.parametrize("width", WIDTHS)
def test_summary_layer_table_fits_and_keeps_every_number_whole(width):
    import archbench

    summary = archbench.summarize(_LongNamedBlocks(), input_size=(3, 64, 64), depth=3)
    text = rendered(summary, width)
    assert_fits(text, width)
    assert "7,077,888" in text  # the first convolution's MACs (64·3·9 per output, 64x64 outputs), whole
    (header,) = [line for line in text.splitlines() if line.lstrip().startswith("layer ")]
    assert ("output shape" in header) == (width == 200)  # shapes are the first column a narrow terminal drops


@pytest.mark.parametrize("width", WIDTHS)
def test_speedup_vs_eager_and_memory_tables_fit(width, monkeypatch, capsys):
    from test_backends import _row

    from archbench import estimate_memory
    from archbench.cli.backends import print_backend_comparisons
    from archbench.cli.memory import _tables

    monkeypatch.setattr(_common.out, "width", width)
    rows = [dataclasses.replace(_row("eager", 2.0, 1.9, 2.1), model=LONG_REF),
            dataclasses.replace(_row("onnxruntime", 0.5, 0.45, 0.55, compile_s=7.25, max_abs_err=3e-6, max_rel_err=5e-7),
                                model=LONG_REF)]
    capsys.readouterr()
    print_backend_comparisons(rows)
    text = capsys.readouterr().out
    assert_fits(text, width)
    assert "×4.00 (3.45–4.67)" in text and "speed-up vs eager · infer · 3x8x8 · cpu · fp32" in text.replace("\n", " ")

    first = estimate_memory(torch.nn.Conv2d(3, 8, 3), (3, 8, 8), optimizer="adamw")
    estimates = [first.at(batch) for batch in (1, 8, 64, 512, 4_096, 32_768, 262_144)]
    text = "".join(rendered(table, width) for table in _tables(estimates, {}, width))
    assert_fits(text, width)
    assert text.count("batch ") == 7 and ("batch 262,144" in text)
