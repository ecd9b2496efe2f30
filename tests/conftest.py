"""Shared test helpers: run the real CLI (in-process for speed, or as a subprocess where the process
itself matters, e.g. which modules it imports)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli("summary", "mnist-cnn", "--json")`` runs ``archbench`` in this process and returns its exit
    code, stdout and stderr. A wide terminal keeps rich from wrapping table cells."""
    monkeypatch.setenv("COLUMNS", "200")
    from archbench.cli import _state, main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        _state["debug"] = False
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_subprocess(*args: str, env: dict | None = None, cwd: Path | None = None) -> CliResult:
    """Run ``python -m archbench ARGS`` in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-m", "archbench", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
