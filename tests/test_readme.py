"""Every ```python block of the README runs, in order, in one namespace (as a notebook would), from a
scratch directory — the Python API as documented is the Python API as shipped."""

from __future__ import annotations

import re

import pytest
from conftest import REPO


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 3


@pytest.mark.slow
def test_every_python_example_in_the_readme_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in python_blocks():
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own examples
    printed = capsys.readouterr().out
    summary = namespace["summary"]
    assert printed.splitlines()[0] == f"{summary.stats.params_total} {summary.stats.macs}"
    assert printed.splitlines()[0] == "650 442528"  # 16*27+16 + 2*16 + 16*10+10 params; 16*32*32*27 + 160 MACs
    assert (tmp_path / "reports" / "tiny-vs-wrn" / "report.md").is_file()
