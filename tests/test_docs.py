"""The README and the docs are part of the product: every ```python block runs, page by page, in order, in
one namespace per page (as a notebook would), from a scratch directory; the docs site builds with
``mkdocs build --strict`` (every link and anchor checked); the README stays a five-minute read."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def python_blocks(page) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_is_short_and_has_a_python_example():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    assert python_blocks(REPO / "README.md")


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_every_python_example_runs(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs"}
    for block in python_blocks(page):
        exec(compile(block, str(page.name), "exec"), namespace)  # noqa: S102 - the page's own examples
    printed = capsys.readouterr().out
    if "summary" in namespace:  # the summarize example: exact counts, the first thing it prints
        summary = namespace["summary"]
        assert printed.splitlines()[0] == f"{summary.stats.params_total} {summary.stats.macs}"
        assert printed.splitlines()[0] == "650 442528"  # 16*27+16 + 2*16 + 16*10+10 params; 16*32*32*27 + 160 MACs


def test_the_docs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs") or pytest.skip("mkdocs is not installed (it is in the test extra)")
    proc = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_readme_links_resolve():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(((?!https?:)[^)#]+)", readme)
    assert targets
    assert [t for t in targets if not (REPO / t).exists()] == []
