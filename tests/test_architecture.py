"""The package's shape: every top-level module sits in a layer of the import contract (which `lint-imports`
enforces in CI), and no module grows past the size one person reads in a sitting."""

from __future__ import annotations

import tomllib
from pathlib import Path

import archbench

PACKAGE = Path(archbench.__file__).parent
ROOT = PACKAGE.parent


def _layered_modules() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def test_every_top_level_module_is_in_a_layer_of_the_import_contract():
    top = {f"archbench.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    top |= {f"archbench.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert top - _layered_modules() == set(), "place these modules in a layer of [tool.importlinter] (pyproject.toml)"
    assert _layered_modules() - top == set(), "the contract names modules that do not exist"


MAX_MODULE_LINES = 450  # one job per module: past this, it has started a second one
MAX_UNIT_LINES = 2_500  # a top-level package one person holds in mind


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_grows_past_one_job():
    too_long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := _lines(p)) > MAX_MODULE_LINES}
    assert too_long == {}, f"split these by job (at most {MAX_MODULE_LINES} lines each)"


def test_no_unit_grows_past_what_one_person_holds_in_mind():
    units = {p.name: sum(_lines(f) for f in p.rglob("*.py")) for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert {name: n for name, n in units.items() if n > MAX_UNIT_LINES} == {}
