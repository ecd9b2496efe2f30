"""`archbench list` / `archbench check` and the shared bad-input errors, through the real CLI."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, run_subprocess

WRN_40_1 = REPO / "specs" / "wrn-40-1.toml"


def write_spec(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def tiny_wrn(directory: Path, name: str = "my-wrn", params: int = 563_930, extra: str = "") -> Path:
    return write_spec(directory, name, f"""
        name = "{name}"
        family = "wrn"
        description = "a user spec"   # comments survive --update
        input = "3x32x32"
        params = {params}
        {extra}
        [args]
        depth = 40
        widen_factor = 1
        """)


# ----------------------------------------------------------------------------------------------- list


def test_list_json_has_every_spec_and_torchvision_model(cli):
    result = cli("list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["wrn-40-10"] == rows["wrn-40-10"] | {"family": "wrn", "source": "specs", "input": "3x32x32", "params": 55_841_754}
    assert rows["resnext50_32x4d"]["source"] == "torchvision" and rows["resnext50_32x4d"]["params"] == 25_028_904
    assert len([r for r in rows.values() if r["source"] == "torchvision"]) >= 80


def test_list_pattern_and_source_filter(cli):
    result = cli("list", "resnext-*", "--source", "specs", "--json")
    assert [r["name"] for r in json.loads(result.stdout)] == [
        "resnext-50", "resnext-50-dense", "resnext-101", "resnext-101-dense", "resnext-152", "resnext-152-dense"]
    table = cli("list", "mnist*", "--source", "specs")
    assert table.exit_code == 0 and "mnist-cnn" in table.stdout and "44,426" in table.stdout and "1x28x28" in table.stdout


def test_list_rejects_an_unknown_source(cli):
    result = cli("list", "--source", "hub")
    assert result.exit_code == 2 and "--source 'hub' is not one of: specs, plugins, torchvision, timm, hf, all" in result.stderr


def test_specs_ship_with_the_package_and_work_from_any_directory(tmp_path):
    result = run_subprocess("list", "wrn-40-10", "--source", "specs", "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["params"] == 55_841_754


_HEAVY_PROBE = textwrap.dedent("""
    import sys, runpy
    sys.argv = ["archbench", *sys.argv[1:]]
    try:
        runpy.run_module("archbench", run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    heavy = sorted(m for m in ("torch", "torchvision", "fvcore", "torchinfo", "pandas", "matplotlib") if m in sys.modules)
    print("HEAVY=" + ",".join(heavy), file=sys.stderr)
    """)


@pytest.mark.slow
def test_listing_every_source_reads_the_zoo_from_its_cache_without_importing_torch(tmp_path):
    """The first listing imports torchvision and caches its zoo's metadata (keyed by torchvision's
    version); the next one reads the cache: the same listing, no torch, no torchvision."""
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", _HEAVY_PROBE, "list", "--json"], capture_output=True, text=True,
                           cwd=tmp_path, env=env) for _ in range(2)]
    assert "torchvision" in runs[0].stderr.split("HEAVY=")[1]
    assert "HEAVY=\n" in runs[1].stderr, runs[1].stderr[-2000:]
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout)
    assert list((tmp_path / "cache" / "archbench").glob("torchvision-*-zoo.json"))


def test_help_and_spec_listing_do_not_import_torch(tmp_path):
    import subprocess
    import sys

    for args in (["--help"], ["list", "--source", "specs"], ["summary", "--help"], ["bench", "--help"], ["compare", "--help"],
                 ["profile", "--help"]):
        proc = subprocess.run([sys.executable, "-c", _HEAVY_PROBE, *args], capture_output=True, text=True, cwd=tmp_path)
        assert "HEAVY=\n" in proc.stderr, (args, proc.stderr[-2000:])


def test_python_dash_m_works():
    result = run_subprocess("--version")
    assert result.exit_code == 0 and result.stdout.startswith("archbench ")


# ---------------------------------------------------------------------------------------------- check


def test_check_passes_for_specs_and_prints_ok(cli):
    result = cli("check", "wrn-40-*", "--source", "specs", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["model"] for r in rows} == {f"wrn-40-{k}" for k in (1, 2, 4, 8, 10)} | {"wrn-40-10-bias"}
    assert all(r["ok"] and r["params"] == r["expected_params"] for r in rows)


def test_check_fails_on_drift_and_update_accepts_it(cli, tmp_path):
    path = tiny_wrn(tmp_path, params=563_000)
    drift = cli("check", "my-wrn", "--specs", tmp_path)
    assert drift.exit_code == 1
    assert "DRIFT (+930)" in drift.stdout and "--update" in drift.stderr
    as_json = json.loads(cli("check", "my-wrn", "--specs", tmp_path, "--json").stdout)
    assert as_json == [as_json[0] | {"model": "my-wrn", "expected_params": 563_000, "params": 563_930, "ok": False}]

    update = cli("check", "my-wrn", "--specs", tmp_path, "--update")
    assert update.exit_code == 0 and "UPDATED" in update.stdout
    text = path.read_text()
    assert "params = 563_930" in text and "# comments survive --update" in text and "depth = 40" in text
    assert cli("check", "my-wrn", "--specs", tmp_path).exit_code == 0


def test_archbench_specs_env_var_adds_user_specs(cli, tmp_path, monkeypatch):
    tiny_wrn(tmp_path, name="env-wrn")
    monkeypatch.setenv("ARCHBENCH_SPECS", str(tmp_path))
    rows = json.loads(cli("list", "env-wrn", "--json").stdout)
    assert rows[0]["source"] == "user" and rows[0]["params"] == 563_930


def test_user_spec_may_replace_a_builtin_only_when_it_says_so(cli, tmp_path):
    tiny_wrn(tmp_path, name="wrn-40-10")
    clash = cli("list", "--specs", tmp_path)
    assert clash.exit_code == 2
    assert "has the name of a built-in spec" in clash.stderr and "overrides = true" in clash.stderr
    tiny_wrn(tmp_path, name="wrn-40-10", extra="overrides = true")
    rows = json.loads(cli("list", "wrn-40-10", "--specs", tmp_path, "--json").stdout)
    assert rows[0]["source"] == "user" and rows[0]["params"] == 563_930


# ------------------------------------------------------------------------------------------ bad input


def test_unknown_model_suggests_the_closest_names(cli):
    result = cli("check", "wrn-40-11")
    assert result.exit_code == 2
    assert "unknown model 'wrn-40-11'" in result.stderr and "wrn-40-1" in result.stderr and "wrn-40-10" in result.stderr
    assert "Traceback" not in result.output


def test_invalid_toml_names_file_and_line(cli, tmp_path):
    bad = write_spec(tmp_path, "broken", 'name = "broken"\nfamily = "wrn"\ninput = 3x32x32\n')
    result = cli("list", "--specs", tmp_path)
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "not valid TOML" in result.stderr and "line 3" in result.stderr


def test_unknown_family_names_file_model_and_known_families(cli, tmp_path):
    path = write_spec(tmp_path, "odd", 'name = "odd"\nfamily = "vgg"\ndescription = "x"\ninput = "3x32x32"\n')
    result = cli("check", "odd", "--specs", tmp_path)
    assert result.exit_code == 2
    assert str(path) in result.stderr and "model 'odd' names unknown family 'vgg'" in result.stderr
    known = result.stderr.split("known families:")[-1]
    assert all(family in known for family in ("mnist-cnn", "resnet-cifar", "resnext", "wrn"))  # (+ tests' own)


def test_unknown_argument_lists_the_valid_ones(cli, tmp_path):
    path = tiny_wrn(tmp_path, extra="").read_text().replace("widen_factor = 1", "widen = 1")
    (tmp_path / "my-wrn.toml").write_text(path)
    result = cli("check", "my-wrn", "--specs", tmp_path)
    assert result.exit_code == 2
    assert "model 'my-wrn': family 'wrn' has no argument 'widen'" in result.stderr
    assert "Valid arguments: depth: int, widen_factor: int, num_classes: int, dropout: float, bias: bool" in result.stderr


def test_invalid_wrn_depth_in_a_spec(cli, tmp_path):
    (tmp_path / "my-wrn.toml").write_text(tiny_wrn(tmp_path).read_text().replace("depth = 40", "depth = 41"))
    result = cli("check", "my-wrn", "--specs", tmp_path)
    assert result.exit_code == 2 and "WRN depth 41 is invalid" in result.stderr and "40 or 46" in result.stderr


def test_spec_with_bad_input_or_unknown_key_is_rejected(cli, tmp_path):
    write_spec(tmp_path, "a", 'name = "a"\nfamily = "wrn"\ndescription = "x"\ninput = "3x64"\n')
    result = cli("list", "--specs", tmp_path)
    assert result.exit_code == 2 and "model 'a'" in result.stderr and "'3x64' is not an input shape" in result.stderr
    (tmp_path / "a.toml").write_text('name = "a"\nfamily = "wrn"\ndescription = "x"\ninput = "3x6x6"\ncolour = 1\n')
    result = cli("list", "--specs", tmp_path)
    assert result.exit_code == 2 and "unknown key(s) colour" in result.stderr


def test_missing_specs_directory(cli, tmp_path):
    result = cli("list", "--specs", tmp_path / "nope")
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path):
    result = run_subprocess("--debug", "check", "wrn-40-11")
    assert result.exit_code != 0 and "Traceback" in result.stderr and "UnknownModelError" in result.stderr
