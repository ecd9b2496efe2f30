"""``hf:`` references: Hugging Face transformers' vision models from a config (a model type, a config.json in
the local cache or a folder), never downloaded. Each model is shrunk with ``--set`` so a test stays fast; the
counts are compared with the model transformers itself builds from the same config, and with the same model
named through a plain file reference."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

transformers = pytest.importorskip("transformers", reason='transformers is optional: pip install "archbench[hf]"')

# Small configs of the five architectures the issue names (a few thousand parameters each).
SMALL = {
    "vit": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
            "image_size": 32, "patch_size": 8},
    "swin": {"embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4, "image_size": 32, "patch_size": 4},
    "convnext": {"num_stages": 2, "hidden_sizes": [8, 16], "depths": [1, 1], "image_size": 32},
    "dinov2": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "mlp_ratio": 2, "image_size": 32,
               "patch_size": 8},
    # 64x64: at 32x32 its last stage is 1x1, where BatchNorm cannot train on one sample
    "mobilevit": {"hidden_sizes": [16, 16, 16], "neck_hidden_sizes": [8, 8, 8, 8, 8, 8, 16], "num_attention_heads": 2,
                  "image_size": 64, "patch_size": 2},
}


def sets(args: dict) -> list[str]:
    return [item for key, value in args.items() for item in ("--set", f"{key}={json.dumps(value)}")]


def summary_json(cli, *args: str) -> dict:
    result = cli("summary", *args, "--depth", "0", "--json")
    assert result.exit_code == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def built_by_transformers(model_type: str, args: dict):
    """The model as a transformers user builds it: the default config of the type, the overrides, and the
    image-classification auto class (1000 labels, as archbench's default for a model type)."""
    config = transformers.AutoConfig.for_model(model_type, num_labels=1000, **args)
    return transformers.AutoModelForImageClassification.from_config(config)


@pytest.mark.parametrize("model_type", sorted(SMALL))
def test_counts_equal_transformers_own_and_a_file_reference(cli, tmp_path, model_type):
    args = SMALL[model_type]
    summary = summary_json(cli, f"hf:{model_type}", *sets(args))
    size = args["image_size"]
    assert summary["model"] == f"hf:{model_type}" and summary["family"] == "transformers"
    assert summary["input"] == [3, size, size]  # the default input follows --set image_size
    assert summary["params_total"] == built_by_transformers(model_type, args).num_parameters()
    file = tmp_path / "hfnet.py"
    file.write_text(textwrap.dedent(f"""
        from transformers import AutoConfig, AutoModelForImageClassification

        def build():
            config = AutoConfig.for_model({model_type!r}, num_labels=1000, **{args!r})
            return AutoModelForImageClassification.from_config(config)
        """))
    plain = summary_json(cli, f"{file}:build", "--input", f"3x{size}x{size}")
    assert summary["macs"] == plain["macs"] > 0
    assert summary["params_total"] == plain["params_total"]
    assert summary["macs_flag"] == ""  # nothing uncounted


def test_without_overrides_vit_is_vit_b_16_with_torchvision_s_parameter_count():
    """The default ViTConfig is ViT-B/16: with 1000 labels it has torchvision's vit_b_16's 86,567,656
    parameters (counted on meta: nothing is allocated)."""
    from archbench.catalog.refs import resolve_model
    from archbench.catalog.registry import count_params

    spec = resolve_model("hf:vit")
    assert spec.input == (3, 224, 224) and spec.inputs == "archbench.catalog.models.hf_zoo:pixel_values"
    assert count_params(spec.build("meta")) == 86_567_656


@pytest.mark.slow
def test_default_vit_counts_exactly_as_torchvision_s_vit_b_16(cli):
    """Same architecture, two implementations: the same parameters and MACs (17.56 GMACs, 224x224)."""
    hf, tv = summary_json(cli, "hf:vit"), summary_json(cli, "tv:vit_b_16")
    assert (hf["params_total"], hf["macs"], hf["input"]) == (tv["params_total"], tv["macs"], tv["input"])
    assert hf["macs"] == 17_563_828_224


def test_the_default_input_follows_image_size_and_num_channels():
    from archbench.catalog.refs import resolve_model

    assert resolve_model("hf:mobilevit").input == (3, 256, 256)  # its config's image_size
    assert resolve_model("hf:vit", args={"image_size": 48}).input == (3, 48, 48)
    assert resolve_model("hf:vit", args={"image_size": [48, 32], "num_channels": 1}).input == (1, 48, 32)


def test_a_study_file_s_args_set_the_config_and_its_input(tmp_path):
    from archbench.study import load_study, resolve_models

    study = tmp_path / "hf.toml"
    study.write_text(textwrap.dedent("""
        models = [{ model = "hf:vit", name = "tiny-vit", args = { image_size = 64, num_hidden_layers = 1 } }]
        [grid]
        devices = "cpu"
        """))
    (spec,) = resolve_models(load_study(study))
    assert spec.name == "tiny-vit" and spec.input == (3, 64, 64)
    assert spec.args == {"image_size": 64, "num_hidden_layers": 1} and spec.set_args == {}  # the file's own


# ------------------------------------------------------------------------------- config.json: cache, folder


def write_cached_config(cache, repo: str, config, revision: str = "0123abcd") -> None:
    """A model in the Hugging Face cache layout: models--org--name/{refs/main, snapshots/<rev>/config.json}."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "snapshots" / revision).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)
    config.to_json_file(str(folder / "snapshots" / revision / "config.json"))


def test_a_model_in_the_local_cache_is_built_from_its_config_json(cli, tmp_path, monkeypatch):
    config = transformers.AutoConfig.for_model("vit", num_labels=10, **SMALL["vit"])
    write_cached_config(tmp_path / "hub", "acme/tiny-vit", config)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    summary = summary_json(cli, "hf:acme/tiny-vit")
    assert summary["input"] == [3, 32, 32] and "acme/tiny-vit" in summary["description"]
    expected = transformers.AutoModelForImageClassification.from_config(config).num_parameters()
    assert summary["params_total"] == expected  # its own 10 labels, not 1000
    wider = summary_json(cli, "hf:acme/tiny-vit", "--set", "image_size=64")
    assert wider["input"] == [3, 64, 64] and wider["params_total"] > expected  # more position embeddings


def test_a_config_absent_from_the_cache_is_a_clear_error_naming_the_cache(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = cli("summary", "hf:acme/not-here")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no config.json for 'acme/not-here' in the local Hugging Face cache" in result.stderr
    assert str(tmp_path / "hub" / "models--acme--not-here") in result.stderr.replace("\n", "")
    assert "HF_HUB_CACHE" in result.stderr and "never downloads" in result.stderr


def test_a_folder_s_config_json_builds_the_architecture_it_names(cli, tmp_path, monkeypatch):
    """A checkpoint's config names its class (``architectures``): a DINOv2 backbone has no classifier."""
    folder = tmp_path / "my-dinov2"
    config = transformers.AutoConfig.for_model("dinov2", architectures=["Dinov2Model"], **SMALL["dinov2"])
    config.save_pretrained(str(folder))
    monkeypatch.chdir(tmp_path)
    summary = summary_json(cli, "hf:./my-dinov2")
    assert summary["description"].startswith("Dinov2Model (config.json in the folder)")
    assert summary["params_total"] == transformers.Dinov2Model(config).num_parameters()
    missing = cli("summary", "hf:./elsewhere")
    assert missing.exit_code == 2 and "'hf:" in missing.stderr and "no such folder" in missing.stderr


# ------------------------------------------------------------------------------------------- bad input


def test_an_unknown_model_type_gets_the_closest(cli):
    result = cli("summary", "hf:vitt")
    assert result.exit_code == 2 and "has no model type 'vitt'" in result.stderr and "hf:vit" in result.stderr


def test_a_misspelt_config_field_is_refused_not_kept_silently(cli):
    result = cli("summary", "hf:vit", "--set", "num_hiden_layers=1")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'num_hiden_layers' is not a field of ViTConfig" in result.stderr
    assert "Did you mean 'num_hidden_layers'?" in result.stderr


def test_a_text_model_type_is_refused(cli):
    result = cli("summary", "hf:bert")
    assert result.exit_code == 2 and "BertConfig states no image_size or num_channels" in result.stderr


def test_transformers_not_installed_is_one_line_with_the_install_command(tmp_path):
    probe = textwrap.dedent("""
        import sys, runpy
        sys.modules["transformers"] = None  # how Python marks a module as not importable
        sys.argv = ["archbench", "summary", "hf:vit"]
        runpy.run_module("archbench", run_name="__main__")
        """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == 'error: transformers is not installed: pip install "archbench[hf]"'


def test_help_listing_and_argument_errors_import_neither_torch_nor_transformers(tmp_path):
    probe = textwrap.dedent("""
        import sys, runpy
        sys.argv = ["archbench", *sys.argv[1:]]
        try:
            runpy.run_module("archbench", run_name="__main__")
        except SystemExit:
            pass
        heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        print("HEAVY=" + ",".join(heavy), file=sys.stderr)
        """)
    for args in (["list", "--source", "specs"], ["list", "--help"], ["summary", "hf:vit", "--batch", "0"]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=tmp_path)
        assert "HEAVY=\n" in proc.stderr, (args, proc.stderr[-2000:])


def test_list_source_hf_lists_the_vision_model_types(cli):
    result = cli("list", "--source", "hf", "vit*", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"hf:vit", "hf:vit_msn"} <= set(rows)
    assert rows["hf:vit"]["input"] == "3x224x224" and rows["hf:vit"]["source"] == "hf"
    assert rows["hf:vit"]["description"].startswith("ViTForImageClassification (default config, 1000 classes)")


# ------------------------------------------------------------------------------------------------ bench


def test_bench_runs_infer_and_train(cli, tmp_path):
    """A training step takes its loss on the ModelOutput's logits."""
    out = tmp_path / "hf.csv"
    result = cli("bench", "hf:vit", *sets(SMALL["vit"]), "--mode", "infer,train", "--quick", "--max-time", "0.2",
                 "--precision", "0.5", "--batch", "2", "--threads", "1", "--out", out, "--no-db", "--json")
    assert result.exit_code == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)["rows"]
    assert sorted((r["mode"], r["status"]) for r in rows) == [("infer", "ok"), ("train", "ok")]
    assert all(r["model"] == "hf:vit" and r["input"] == "3x32x32" and r["median_ms"] > 0 for r in rows)
