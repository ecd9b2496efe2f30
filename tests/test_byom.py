"""Bring your own model: model references (``module:attr``, ``./file.py:attr``, ``tv:``, ``timm:``, plugin
families), ``--set``/``--inputs`` on every command, spec files with a ``builder``, study files with per-model
``args``/``inputs`` — and every error a reference can meet, through the real CLI.

User code is real: files written to a temporary folder and imported from there; the plugin is a real
distribution (a ``*.dist-info`` folder with ``entry_points.txt``) on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_subprocess

TINY = '''
"""Tiny test networks."""
from torch import nn


class TinyNet(nn.Module):
    """A tiny test net."""

    def __init__(self, width: int = 4, num_classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.norm(self.conv(x)).mean((2, 3)))


def build(width: int = 4, depth: int = 1):
    """A factory: ``depth`` convolutions of ``width`` channels."""
    layers = [nn.Conv2d(3, width, 3, padding=1)] + [nn.Conv2d(width, width, 3, padding=1) for _ in range(depth - 1)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3))


def broken(width: int = 4):
    if width < 8:
        raise ValueError("width must be at least 8")
    return TinyNet(width)


def not_a_model():
    return {"weights": 1}


model = TinyNet(6)
NUMBER = 3
'''

MASKED = '''
"""A model whose forward takes two keyword inputs, and the factory that makes them."""
import torch
from torch import nn


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, image, mask):
        return self.fc((self.conv(image) * mask).mean((2, 3)))


def make_inputs(batch, input_shape, dtype, device):
    _, height, width = input_shape
    return {"image": torch.randn(batch, *input_shape, device=device),
            "mask": torch.ones(batch, 1, height, width, device=device)}
'''


@pytest.fixture(autouse=True)
def _sys_path_restored(monkeypatch):
    """Resolving user code puts its folder (or the working directory) on ``sys.path``, as Python does for a
    script: restored after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def user_dir(tmp_path, monkeypatch, request):
    """A working directory holding a package ``<pkg>/nets.py`` and a plain file ``nets/tiny.py`` with
    :data:`TINY`; the package name is unique to the test (imported modules stay in ``sys.modules``)."""
    package = "userpkg_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:40]
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "nets.py").write_text(TINY)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "tiny.py").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    return package


def own_params(path: Path, attr: str, **kwargs) -> int:
    """The parameter count of ``attr(**kwargs)`` from ``path``, imported here independently of archbench."""
    spec = importlib.util.spec_from_file_location(f"expected_{path.stem}_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sum(p.numel() for p in getattr(module, attr)(**kwargs).parameters())


def summary_json(cli, *args):
    result = cli("summary", *args, "--depth", "0", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def params_of(summary: dict) -> int:
    return summary["params_total"]


# --------------------------------------------------------------------------------------------- references


def test_a_class_in_the_users_package_by_module_attr(cli, user_dir):
    summary = summary_json(cli, f"{user_dir}.nets:TinyNet", "--input", "3x8x8")
    assert summary["model"] == f"{user_dir}.nets:TinyNet" and summary["family"] == "python"
    assert params_of(summary) == own_params(Path(user_dir) / "nets.py", "TinyNet")


def test_the_same_class_by_file_path_with_set(cli, user_dir):
    summary = summary_json(cli, "./nets/tiny.py:TinyNet", "--input", "3x8x8", "--set", "width=16")
    assert summary["model"] == "./nets/tiny.py:TinyNet"
    assert params_of(summary) == own_params(Path("nets/tiny.py"), "TinyNet", width=16)
    assert params_of(summary) != own_params(Path("nets/tiny.py"), "TinyNet")


def test_a_file_imports_its_neighbours(cli, tmp_path, monkeypatch):
    (tmp_path / "blocks_for_byom.py").write_text("from torch import nn\n\ndef stem(width):\n    return nn.Conv2d(3, width, 3)\n")
    (tmp_path / "withneighbour.py").write_text(
        "from torch import nn\nfrom blocks_for_byom import stem\n\n"
        "def build(width: int = 5):\n    return nn.Sequential(stem(width), nn.Flatten())\n")
    monkeypatch.chdir(tmp_path.parent)  # the file's folder is importable for it, wherever archbench runs
    summary = summary_json(cli, f"{tmp_path.name}/withneighbour.py:build", "--input", "3x8x8")
    assert params_of(summary) == 3 * 5 * 9 + 5


def test_a_factory_with_set_on_bench(cli, user_dir, tmp_path):
    out = tmp_path / "bench.csv"
    result = cli("bench", f"{user_dir}.nets:build", "--set", "width=8", "--set", "depth=2", "--input", "3x8x8",
                 "--mode", "infer", "--max-time", "0.3", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["model"], r["status"]) for r in rows] == [(f"{user_dir}.nets:build", "ok")]
    # flops of the built model: depth 2 at width 8 (a second 8->8 3x3 conv) counted, not the defaults
    second_conv_flops = 2 * 8 * 8 * 9 * 8 * 8
    assert rows[0]["flops_per_step"] > second_conv_flops


def test_set_applies_to_every_model_and_a_model_without_the_argument_is_an_error(cli, user_dir, tmp_path):
    out = tmp_path / "bench.csv"
    result = cli("bench", f"{user_dir}.nets:build", "mnist-cnn", "--set", "width=8", "--mode", "infer",
                 "--max-time", "0.3", "--out", out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--set width=8: model 'mnist-cnn': family 'mnist-cnn' has no argument 'width'" in result.stderr
    assert "Valid arguments: num_classes: int" in result.stderr
    assert not out.exists()  # refused before anything was measured


def test_an_instance_is_accepted_and_never_changed(cli, user_dir, tmp_path):
    import torch

    summary = summary_json(cli, f"{user_dir}.nets:model", "--input", "3x8x8")
    instance = sys.modules[f"{user_dir}.nets"].model  # the very object archbench used (same process)
    before = {k: v.clone() for k, v in instance.state_dict().items()}
    result = cli("bench", f"{user_dir}.nets:model", "--input", "3x8x8", "--batch", "2", "--mode", "train",
                 "--max-time", "0.3", "--out", tmp_path / "b.csv")
    assert result.exit_code == 0, result.output
    assert params_of(summary) == sum(p.numel() for p in instance.parameters())
    assert instance.training and not instance._forward_hooks and not instance._forward_pre_hooks
    assert all(torch.equal(before[k], v) for k, v in instance.state_dict().items())  # BatchNorm stats too
    assert all(p.grad is None and p.device.type == "cpu" for p in instance.parameters())


def test_an_instance_takes_no_arguments(cli, user_dir):
    result = cli("summary", f"{user_dir}.nets:model", "--set", "width=8")
    assert result.exit_code == 2
    assert "is an nn.Module instance: it takes no arguments" in result.stderr and "Name its class" in result.stderr


def test_a_dict_input_factory_on_summary_and_bench(cli, tmp_path, monkeypatch):
    (tmp_path / "masked.py").write_text(MASKED)
    monkeypatch.chdir(tmp_path)
    summary = summary_json(cli, "./masked.py:Masked", "--inputs", "./masked.py:make_inputs", "--input", "3x8x8")
    assert summary["macs"] == 8 * 8 * 4 * 27 + 4 * 2  # the conv on the image, the linear head
    result = cli("bench", "./masked.py:Masked", "--inputs", "./masked.py:make_inputs", "--input", "3x8x8", "--batch", "2",
                 "--mode", "train", "--max-time", "0.3", "--out", tmp_path / "b.csv", "--json")
    assert result.exit_code == 0, result.output
    assert [(r["mode"], r["status"]) for r in json.loads(result.stdout)["rows"]] == [("train", "ok")]


# ------------------------------------------------------------------------------------ specs and studies


def _builder_spec(folder: Path, params: int | None) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "marked.py").write_text("from pathlib import Path\nPath(__file__).with_suffix('.imported').touch()\n" + TINY)
    spec = folder / "tiny-w8.toml"
    lines = ['name = "tiny-w8"', 'builder = "./marked.py:TinyNet"', 'description = "my own"', 'input = "3x8x8"']
    spec.write_text("\n".join(lines + ([f"params = {params}"] if params is not None else []) + ["", "[args]", "width = 8", ""]))
    return spec


def test_a_spec_with_a_builder_is_checked_and_updated(cli, tmp_path):
    spec = _builder_spec(tmp_path / "specs", params=1)
    marker = tmp_path / "specs" / "marked.imported"
    listed = cli("list", "tiny-w8", "--source", "specs", "--specs", tmp_path / "specs", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["builder"] == f"{tmp_path / 'specs' / 'marked.py'}:TinyNet"
    assert not marker.exists()  # listing imports no user code

    drift = cli("check", "tiny-w8", "--specs", tmp_path / "specs", "--json")
    expected = own_params(tmp_path / "specs" / "marked.py", "TinyNet", width=8)
    assert drift.exit_code == 1 and json.loads(drift.stdout)[0]["params"] == expected and marker.exists()
    assert cli("check", "tiny-w8", "--specs", tmp_path / "specs", "--update").exit_code == 0
    assert f"params = {expected:_}" in spec.read_text()
    assert cli("check", "tiny-w8", "--specs", tmp_path / "specs").exit_code == 0


@pytest.mark.slow
def test_a_study_file_names_models_with_args_and_inputs(cli, tmp_path, monkeypatch):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "tiny.py").write_text(TINY)
    (tmp_path / "nets" / "masked.py").write_text(MASKED)
    study = tmp_path / "mine.toml"
    study.write_text(textwrap.dedent("""
        models = [
          { model = "./nets/tiny.py:TinyNet", name = "tiny-w8", args = { width = 8 } },
          "./nets/tiny.py:build",
          { model = "./nets/masked.py:Masked", name = "masked", inputs = "./nets/masked.py:make_inputs" },
        ]
        [grid]
        inputs = ["3x8x8"]
        batches = [1]
        modes = ["infer"]
        [options]
        max_time_s = 0.3
        """))
    monkeypatch.chdir(tmp_path / "nets")  # paths in a study file are relative to the file, not the working directory
    result = cli("compare", "--study", study, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert {r["model"]: r["status"] for r in data["rows"]} == {"tiny-w8": "ok", "./nets/tiny.py:build": "ok", "masked": "ok"}
    counted = {s["model"]: s["params_total"] for s in data["model_stats"]}
    assert counted["tiny-w8"] == own_params(tmp_path / "nets" / "tiny.py", "TinyNet", width=8)
    assert set(counted) == {"tiny-w8", "./nets/tiny.py:build", "masked"}  # masked counted on its factory's inputs
    assert not data["model_stats_errors"]
    assert {m["name"]: m["input"] for m in data["models"]}["masked"] == "3x8x8"  # no own input: the study's


def test_a_studys_models_round_trip_through_its_json(tmp_path):
    from archbench.study import load_study, study_from_dict

    study = tmp_path / "mine.toml"
    study.write_text('models = ["resnext-50", { model = "./nets/tiny.py:TinyNet", name = "w8", args = { width = 8 }, '
                     'inputs = "./nets/data.py:make" }]\n')
    loaded = load_study(study)
    stored = json.loads(json.dumps(loaded.to_dict()))
    assert stored["model_sources"] == {"w8": {"model": f"{tmp_path / 'nets' / 'tiny.py'}:TinyNet", "args": {"width": 8},
                                              "inputs": f"{tmp_path / 'nets' / 'data.py'}:make"}}
    assert study_from_dict(stored) == loaded
    (tmp_path / "plain.toml").write_text('models = ["resnext-50", "wrn-40-1"]\n')
    assert "model_sources" not in load_study(tmp_path / "plain.toml").to_dict()  # older reports compare equal


def test_a_bad_reference_in_a_study_file_names_the_file_and_the_key(cli, tmp_path):
    study = tmp_path / "bad.toml"
    study.write_text('models = ["resnext-50", { model = "./nets/tiny.txt:TinyNet" }]\n')
    result = cli("compare", "--study", study)
    assert result.exit_code == 2
    assert f"{study}: models[1]: './nets/tiny.txt' is not a Python file" in result.stderr


def test_compare_names_a_report_folder_after_the_references():
    from archbench.study import adhoc_study

    assert adhoc_study(["./nets/tiny.py:TinyNet", "timm:convnext_atto", "resnext-50"]).name == \
        "tiny.TinyNet-vs-timm.convnext_atto-vs-resnext-50"


# ---------------------------------------------------------------------------------------------- plugins


def _plugin(root: Path) -> None:
    """A distribution 'tinyplug' 0.1 declaring the family 'tinyplugnet' (entry point), as pip installs one."""
    (root / "tinyplug").mkdir(parents=True)
    (root / "tinyplug" / "__init__.py").write_text(
        "import sys\nfrom torch import nn\n\n"
        "def build_tiny(width: int = 4) -> nn.Module:\n"
        "    return nn.Sequential(nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 2))\n")
    info = root / "tinyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[archbench.families]\ntinyplugnet = tinyplug:build_tiny\n")


def test_a_plugin_family_is_listed_built_and_usable_in_a_spec(cli, tmp_path, monkeypatch):
    _plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(tmp_path / "site")
    listed = cli("list", "--source", "plugins", "--json")
    assert listed.exit_code == 0, listed.output
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "tinyplugnet")
    assert row["source"] == "plugin:tinyplug 0.1" and row["family"] == "tinyplugnet" and row["params"] is None

    width_4 = 3 * 4 * 9 + 4 + 4 * 2 + 2
    assert params_of(summary_json(cli, "tinyplugnet", "--input", "3x8x8")) == width_4
    assert params_of(summary_json(cli, "plugin:tinyplugnet", "--input", "3x8x8", "--set", "width=4")) == width_4
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny-plugged.toml").write_text(
        'name = "tiny-plugged"\nfamily = "tinyplugnet"\ndescription = "d"\ninput = "3x8x8"\nparams = 10\n[args]\nwidth = 8\n')
    checked = cli("check", "tiny-plugged", "--specs", tmp_path / "specs", "--json")
    assert json.loads(checked.stdout)[0]["params"] == 3 * 8 * 9 + 8 + 8 * 2 + 2


def test_listing_imports_neither_torch_nor_plugins_nor_builders(tmp_path):
    _plugin(tmp_path / "site")
    _builder_spec(tmp_path / "specs", params=None)
    probe = textwrap.dedent("""
        import sys, runpy
        sys.argv = ["archbench", *sys.argv[1:]]
        try:
            runpy.run_module("archbench", run_name="__main__")
        except SystemExit:
            pass
        heavy = sorted(m for m in ("torch", "torchvision", "timm", "tinyplug") if m in sys.modules)
        print("HEAVY=" + ",".join(heavy), file=sys.stderr)
        """)
    env = {**_env(), "PYTHONPATH": str(tmp_path / "site")}
    for args in (["list", "--source", "plugins"], ["list", "--source", "specs", "--specs", str(tmp_path / "specs")]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert "HEAVY=\n" in proc.stderr, (args, proc.stderr[-2000:])
        assert ("tinyplugnet" if "plugins" in args else "tiny-w8") in proc.stdout
    assert not (tmp_path / "specs" / "marked.imported").exists()


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


# ------------------------------------------------------------------------------------------------- timm


@pytest.fixture
def timm(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the listing's count cache
    return pytest.importorskip("timm", reason='timm is optional: pip install "archbench[timm]"')


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto"])
def test_timm_models_are_counted_like_timm_counts_them(cli, timm, name):
    summary = summary_json(cli, f"timm:{name}", "--input", "3x64x64")
    assert summary["model"] == f"timm:{name}" and summary["family"] == "timm"
    assert params_of(summary) == sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())


@pytest.mark.slow
def test_a_timm_model_is_benched_for_one_small_cell(cli, timm, tmp_path):
    result = cli("bench", "timm:convnext_atto", "--max-time", "0.3", "--input", "3x64x64", "--batch", "1",
                 "--mode", "infer", "--out", tmp_path / "b.csv", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert (row["model"], row["status"], row["input"]) == ("timm:convnext_atto", "ok", "3x64x64")
    assert row["flops_per_step"] > 0


def test_list_source_timm_counts_on_meta_and_takes_the_default_input(cli, timm, tmp_path):
    result = cli("list", "convnext_atto*", "--source", "timm", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {f"timm:{n}" for n in timm.list_models("convnext_atto*")}
    atto = rows["timm:convnext_atto"]
    assert atto["params"] == sum(p.numel() for p in timm.create_model("convnext_atto").parameters())
    assert atto["input"] == "x".join(map(str, timm.get_pretrained_cfg("convnext_atto").input_size))
    assert list((tmp_path / "cache" / "archbench").glob("timm-*-params.json"))  # the next listing is fast


def test_a_spec_can_build_a_timm_model_with_arguments(cli, timm, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "atto-10.toml").write_text(
        'name = "atto-10"\nbuilder = "timm:convnext_atto"\ndescription = "d"\ninput = "3x32x32"\n[args]\nnum_classes = 10\n')
    checked = cli("check", "atto-10", "--specs", tmp_path / "specs", "--json")
    expected = sum(p.numel() for p in timm.create_model("convnext_atto", num_classes=10).parameters())
    assert json.loads(checked.stdout)[0]["params"] == expected


def test_an_unknown_timm_name_gets_the_closest(cli, timm):
    result = cli("summary", "timm:resnet_18")
    assert result.exit_code == 2 and "has no model 'resnet_18'" in result.stderr and "timm:resnet18" in result.stderr


def test_timm_not_installed_is_one_line_with_the_install_command(tmp_path):
    probe = textwrap.dedent("""
        import sys, runpy
        sys.modules["timm"] = None  # how Python marks a module as not importable
        sys.argv = ["archbench", "summary", "timm:resnet18"]
        runpy.run_module("archbench", run_name="__main__")
        """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == 'error: timm is not installed: pip install "archbench[timm]"'


# ----------------------------------------------------------------------------------------------- errors


def test_a_module_that_cannot_be_imported(cli, user_dir):
    result = cli("summary", "nosuchpkg_byom.models:Net")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot import module 'nosuchpkg_byom.models': no module named 'nosuchpkg_byom'" in result.stderr


def test_a_missing_dependency_of_the_users_code_is_named_and_located(cli, tmp_path, monkeypatch):
    (tmp_path / "needsdep.py").write_text("import torch\nimport not_installed_dep_byom\n")
    monkeypatch.chdir(tmp_path)
    result = cli("summary", "needsdep:Net")
    assert result.exit_code == 2
    assert "needsdep.py:2: importing 'needsdep' failed: it imports 'not_installed_dep_byom', which is not installed" \
        in result.stderr


def test_an_attribute_that_is_not_there_lists_what_the_module_has(cli, user_dir):
    result = cli("summary", f"{user_dir}.nets:TinyNett")
    assert result.exit_code == 2
    assert f"{user_dir}.nets has no attribute 'TinyNett'. Did you mean 'TinyNet'?" in result.stderr
    assert ("It has: TinyNet (nn.Module subclass), build (function), broken (function), not_a_model (function), "
            "model (nn.Module instance).") in result.stderr


def test_a_file_that_does_not_exist_or_is_not_python(cli, user_dir):
    missing = cli("summary", "./nets/nothere.py:TinyNet")
    assert missing.exit_code == 2 and "no such file: 'nets/nothere.py'" in missing.stderr
    Path("notes.txt").write_text("hello")
    text = cli("summary", "./notes.txt:TinyNet")
    assert text.exit_code == 2 and "'./notes.txt' is not a Python file" in text.stderr


def test_a_syntax_error_in_the_users_file_through_a_fresh_process(tmp_path):
    (tmp_path / "typo.py").write_text("from torch import nn\n\nclass Net(nn.Module)\n    pass\n")
    result = run_subprocess("summary", "./typo.py:Net", cwd=tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: typo.py:3: loading typo.py failed: SyntaxError:" in result.stderr


def test_an_exception_while_importing_the_users_file_is_located(cli, tmp_path, monkeypatch):
    (tmp_path / "raises.py").write_text("import torch\n\nCHANNELS = {'rgb': 3}\nWIDTH = CHANNELS['rgba']\n")
    monkeypatch.chdir(tmp_path)
    result = cli("summary", "./raises.py:Net")
    assert result.exit_code == 2 and "raises.py:4: loading raises.py failed: KeyError: 'rgba'" in result.stderr


def test_an_object_that_is_not_a_model(cli, user_dir):
    number = cli("summary", f"{user_dir}.nets:NUMBER")
    assert number.exit_code == 2
    assert "is an int, not an nn.Module subclass, a factory returning one or an nn.Module instance" in number.stderr
    returned = cli("summary", f"{user_dir}.nets:not_a_model")
    assert returned.exit_code == 2 and "not_a_model returned dict, not an nn.Module" in returned.stderr


def test_a_factory_that_raises_is_located_to_its_line(cli, user_dir):
    result = cli("summary", "./nets/tiny.py:broken")
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = TINY.splitlines().index('        raise ValueError("width must be at least 8")') + 1
    assert f"nets/tiny.py:{line}: model './nets/tiny.py:broken': broken raised ValueError: width must be at least 8" \
        in result.stderr


def test_an_unknown_keyword_lists_the_valid_ones(cli, user_dir):
    result = cli("summary", "./nets/tiny.py:TinyNet", "--set", "depth=3")
    assert result.exit_code == 2
    assert ("--set depth=3: model './nets/tiny.py:TinyNet': TinyNet has no argument 'depth'. "
            "Valid arguments: width: int, num_classes: int.") in result.stderr


def test_an_ambiguous_name_says_which_was_taken_and_how_to_pick_the_other(cli, tmp_path, monkeypatch):
    from torchvision.models import get_model_weights

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny.py").write_text(TINY)
    (tmp_path / "specs" / "resnet18.toml").write_text(
        'name = "resnet18"\nbuilder = "./tiny.py:TinyNet"\ndescription = "mine"\ninput = "3x8x8"\n')
    taken = cli("summary", "resnet18", "--specs", tmp_path / "specs", "--depth", "0", "--json")
    assert taken.exit_code == 0, taken.output
    assert params_of(json.loads(taken.stdout)) == own_params(tmp_path / "specs" / "tiny.py", "TinyNet")
    assert (f"warning: 'resnet18' names the spec ({tmp_path / 'specs' / 'resnet18.toml'}) and torchvision's model: "
            "the spec is taken; write tv:resnet18 for torchvision's model.") in taken.stderr
    other = cli("summary", "tv:resnet18", "--specs", tmp_path / "specs", "--input", "3x32x32", "--depth", "0", "--json")
    assert params_of(json.loads(other.stdout)) == get_model_weights("resnet18").DEFAULT.meta["num_params"]
    assert "warning" not in other.stderr


def test_malformed_references_and_inputs_options(cli, user_dir):
    assert "not a model reference" in cli("summary", "my net:Net").stderr
    bad_inputs = cli("summary", "mnist-cnn", "--inputs", "mnist-cnn")
    assert bad_inputs.exit_code == 2 and "--inputs 'mnist-cnn': 'mnist-cnn' does not name Python code" in bad_inputs.stderr
    not_callable = cli("summary", "./nets/tiny.py:TinyNet", "--inputs", "./nets/tiny.py:NUMBER")
    assert not_callable.exit_code == 2 and "is an int, not an input factory" in not_callable.stderr
