"""The autouse fixture of conftest.py: a test's registrations (model families, FLOP formulas) do not leak
into the tests after it, and families registered by importing a module (archbench's built-in ones, a
user's model file) stay, since the module will not register them again."""

from __future__ import annotations

import importlib

from conftest import registries_restored

from archbench.catalog import registry
from archbench.catalog.registry import family_names, get_family, register_family


def test_a_family_registered_in_a_test_is_gone_after_it():
    with registries_restored():
        register_family("leaky-family")(lambda: None)
        assert "leaky-family" in family_names()
    assert "leaky-family" not in family_names()
    register_family("leaky-family")(lambda: None)  # free again: no DuplicateFamilyError


def test_a_built_in_family_loaded_in_a_test_stays_loaded():
    with registries_restored():
        builder = get_family("mnist-cnn")  # imports archbench.catalog.models.mnist_cnn once per process
    assert registry._FAMILIES["mnist-cnn"] is builder
    assert get_family("mnist-cnn") is builder


def test_a_family_registered_by_a_module_the_test_imported_stays(tmp_path, monkeypatch):
    (tmp_path / "archbench_test_family_module.py").write_text(
        "from archbench.catalog.registry import register_family\n\n\n"
        "@register_family('imported-test-family')\ndef build():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with registries_restored():
        module = importlib.import_module("archbench_test_family_module")
    assert get_family("imported-test-family") is module.build  # importing it again would not register it


def test_a_flop_formula_registered_in_a_test_is_gone_after_it():
    import torch

    from archbench.costs.formula_registry import formula_for, register_flop_formula

    mm = torch.ops.aten.mm.default
    before = formula_for(mm).source  # torch's formula
    with registries_restored():
        register_flop_formula("aten::mm", lambda *args, out_shape: 1)
        assert formula_for(mm).source.startswith("user (")
    assert formula_for(mm).source == before and not before.startswith("user")
