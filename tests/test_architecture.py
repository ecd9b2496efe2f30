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
