"""Shared test helpers: run the real CLI (in-process for speed, or as a subprocess where the process
itself matters, e.g. which modules it imports), and registries that every test leaves as it found them."""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# `pytest tests/fuzz --hypothesis-profile=long`: the fuzzer's ten-minute run (tests/fuzz/harness.py scales
# each strategy's examples under it; the default profile keeps the whole fuzzer under a minute).
settings.register_profile("long", deadline=None)

REPO = Path(__file__).resolve().parent.parent
REGISTRY = "archbench.catalog.registry"
FORMULAS = "archbench.costs.formula_registry"  # imports torch: looked at only once something imported it


@contextlib.contextmanager
def registries_restored() -> Iterator[None]:
    """Undo, when the block ends, what it registered: model families (``register_family``) and user FLOP
    formulas (``register_flop_formula``, entry-point plugins). Families registered by a module the block
    imported first (archbench's built-in families, a user's model file) stay: a module is imported once
    per process and would not register them again."""
    families = dict(getattr(sys.modules.get(REGISTRY), "_FAMILIES", {}))
    modules = set(sys.modules)
    formulas_module = sys.modules.get(FORMULAS)
    formulas = dict(formulas_module._USER_FORMULAS) if formulas_module else {}
    plugins_loaded = formulas_module._plugins_loaded if formulas_module else False
    try:
        yield
    finally:
        if registry := sys.modules.get(REGISTRY):
            imported = {name: fn for name, fn in registry._FAMILIES.items() if fn.__module__ not in modules}
            registry._FAMILIES.clear()
            registry._FAMILIES.update({**imported, **families})
        if formulas_module := sys.modules.get(FORMULAS):
            formulas_module._USER_FORMULAS.clear()
            formulas_module._USER_FORMULAS.update(formulas)
            formulas_module._plugins_loaded = plugins_loaded


@pytest.fixture(autouse=True)
def _no_leaked_registrations() -> Iterator[None]:
    """No test leaks a family or FLOP formula it registered into the tests after it."""
    with registries_restored():
        yield


@pytest.fixture(autouse=True, scope="module")
def _long_lived_objects_frozen() -> None:
    """What is alive when a test module starts (torch, torchvision, transformers, matplotlib, hypothesis, ... and
    their module-level objects) moves to the collector's permanent generation. archbench runs ``gc.collect()``
    several times a cell (before timing, before reading peak memory); in a pytest process holding every test's
    imports each full collection walked ~0.5 M objects (~0.3 s, most of an in-process cell's cost, and inside
    its time budget). Frozen, they are skipped; garbage of the earlier modules is collected first, so nothing
    that died is kept, and what the tests create is collected as before."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="session")
def _timed_cells_read_a_quiet_machine() -> Iterator[None]:
    """Real runs in tests read the load around their interleaved bursts and over their sampling windows from a
    quiet, scripted machine: whether the shared test machine happens to be busy must not decide whether a paired
    ratio exists (on a busy one it is "not comparable") or a cell is flagged. The load decisions themselves are
    tested on scripted readings (tests/test_interleave.py, tests/test_load.py); the whole-cell check still reads
    the real machine (tests/test_load.py's busy loop)."""
    from archbench.sweep import cell_measure, interleave
    from archbench.timing.loadsignal import LoadProbe

    def quiet() -> LoadProbe:
        return LoadProbe(cpu_times=lambda: (0.0, 0.0), stall=lambda: 0.0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(interleave, "LoadProbe", quiet)
        patch.setattr(cell_measure, "LoadProbe", quiet)
        yield


@pytest.fixture(autouse=True)
def _results_store_in_tmp(tmp_path_factory, monkeypatch) -> None:
    """Runs record into a store of the test session (subprocesses inherit it), never the repository's
    ``reports/archbench.db``; tests of the default location unset it themselves."""
    monkeypatch.setenv("ARCHBENCH_DB", str(tmp_path_factory.getbasetemp() / "archbench.db"))


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
