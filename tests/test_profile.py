"""``archbench profile`` / ``archbench.profile``: per-module time with CIs, FLOPs that add up to the summary's,
bytes moved, the roofline, the store, report and diff of profiles. Tiny models, one thread, few steps; the
roofs are measured once per module (``measured_peaks``) and passed in, except in the CLI test."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
import torch
from torch import nn

from archbench.catalog.source import as_source
from archbench.costs.traffic import module_costs
from archbench.results.profiles import ModelProfile
from archbench.runs.profile import ProfileOptions, measure_peaks, profile_model
from archbench.timing.options import MeasureOptions

QUICK = ProfileOptions(min_steps=11, max_steps=11, unprofiled=MeasureOptions(max_time_s=0.3))


@pytest.fixture(scope="module")
def measured_peaks():
    """This machine's roofs at one thread, measured once for the module's tests."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure_peaks("cpu", "fp32", 1)
    finally:
        torch.set_num_threads(previous)


class Dominant(nn.Module):
    """One wide 3x3 convolution among 1x1s: it does ~9x the work of the next layer."""

    def __init__(self):
        super().__init__()
        self.pw1 = nn.Conv2d(16, 16, 1)
        self.wide = nn.Conv2d(16, 64, 3, padding=1)
        self.pw2 = nn.Conv2d(64, 16, 1)
        self.pw3 = nn.Conv2d(16, 16, 1)

    def forward(self, x):
        return self.pw3(self.pw2(self.wide(self.pw1(x))))


class Scale(nn.Module):
    """An elementwise op: one operation per element, 8 bytes moved per element (fp32 read + write)."""

    def forward(self, x):
        return x * 1.5


class MemoryBound(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(16, 64, 3, padding=1)
        self.scale = Scale()

    def forward(self, x):
        return self.scale(self.conv(x))


def _profile(model, input=(16, 32, 32), batch=2, peaks=None, **kwargs) -> ModelProfile:
    return profile_model(as_source(model, input=input), batch=batch, threads=1, options=QUICK, peaks=peaks, **kwargs)


def test_a_dominant_layer_ranks_first_with_a_ci_that_excludes_the_second(measured_peaks):
    profile = _profile(Dominant(), peaks=measured_peaks)
    first, second = profile.leaves()[:2]
    assert first.name == "wide"
    assert first.ci_ms[0] > second.ci_ms[1], (first.ci_ms, second.name, second.ci_ms)
    assert profile.steps == 11 and all(len(layer.time_ms) == 11 for layer in profile.layers)
    assert first.share_median > 0.5


def test_an_elementwise_layer_lands_left_of_the_ridge_point(measured_peaks):
    profile = _profile(MemoryBound(), peaks=measured_peaks)
    scale, conv = profile.layer("scale"), profile.layer("conv")
    assert scale.bytes == 2 * 2 * 64 * 32 * 32 * 4  # read + write, fp32
    assert scale.work_flops == 2 * 64 * 32 * 32 and scale.flops == 0  # elementwise: work, not MACs
    assert scale.intensity == pytest.approx(0.125)
    assert scale.intensity < profile.peaks.ridge and profile.peaks.bound(scale.intensity) == "memory"
    assert conv.intensity > 10 * scale.intensity
    assert math.isfinite(profile.peaks.gbps) and profile.peaks.gbps > 0


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_per_module_flops_add_up_exactly_to_the_summarys(mode, measured_peaks):
    import archbench

    model = Dominant()
    profile = _profile(model, mode=mode, peaks=measured_peaks)
    stats = archbench.count(model, input_size=(16, 32, 32), batch=2)
    expected = stats.flops_forward + (stats.flops_backward if mode == "train" else 0)
    assert profile.summary_flops == expected and profile.flops == expected and profile.flops_match
    assert sum(layer.flops for layer in profile.top_level) == expected  # no FLOP in the model's own forward
    if mode == "train":
        wide = profile.layer("wide")
        assert wide.backward_median_ms > 0 and wide.forward_median_ms > 0
        assert profile.layer("pw1").flops == 2 * 2 * 16 * 16 * 32 * 32 * 2  # forward + weight gradient (input needs none)


def test_bytes_moved_are_inputs_weights_and_outputs_of_each_op():
    linear = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
    x = torch.randn(2, 8)
    costs = module_costs(linear, lambda: linear(x), "infer")
    # addmm reads the bias (4 floats), x (2x8) and the weight (4x8, through a view) and writes 2x4
    assert costs.bytes["0"] == 4 * (4 + 16 + 32 + 8)
    assert costs.bytes["1"] == 4 * (8 + 8)  # relu reads 2x4 and writes 2x4
    assert costs.bytes[""] == costs.bytes["0"] + costs.bytes["1"]


def test_coverage_overhead_and_the_json_round_trip(measured_peaks, tmp_path):
    profile = _profile(Dominant(), peaks=measured_peaks, trace_path=tmp_path / "trace.json")
    assert math.isfinite(profile.coverage) and profile.coverage > 0
    assert math.isfinite(profile.overhead)
    assert sum(profile.top_level_ms) > 0 and len(profile.unprofiled_ms) >= 5
    assert "traceEvents" in json.loads((tmp_path / "trace.json").read_text())
    again = ModelProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again.layers == profile.layers and again.coverage == profile.coverage and again.peaks == profile.peaks


def test_profile_plots_and_markdown(measured_peaks, tmp_path):
    from archbench.report.profile_view import write_profile_report

    files = {p.name for p in write_profile_report(_profile(MemoryBound(), peaks=measured_peaks), tmp_path)}
    assert {"roofline.png", "roofline.svg", "time_breakdown.png", "time_breakdown.svg", "profile.md",
            "profile.json"} <= files
    text = (tmp_path / "profile.md").read_text()
    assert "| scale |" in text.replace("  ", " ") and "memory" in text and "coverage" in text


def test_a_schema_1_store_gains_the_profile_tables_when_opened_for_writing(tmp_path):
    from archbench.results.store import SCHEMA_VERSION, Store

    path = tmp_path / "old.db"
    with Store.open(path) as store:
        store.begin_run("archbench bench x", env={})
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE profiles")
    raw.execute("DROP TABLE bandwidth_peaks")
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    with Store.open(path, readonly=True) as store:
        assert store.profile_json(1) is None and store.bandwidth(1) == {}
    with Store.open(path) as store:
        store.record_bandwidth(1, "cpu", 1, 10.0, 9.0)
        assert store.bandwidth(1) == {("cpu", 1): (10.0, 9.0)}
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    raw.close()


@pytest.mark.slow
def test_cli_profile_report_and_diff(cli, tmp_path):
    """The real command twice (roofs measured), then report and diff of the two stored profiles."""
    db = tmp_path / "p.db"
    args = ["mnist-cnn", "--batch", "4", "--threads", "1", "--min-steps", "6", "--max-steps", "6", "--max-time", "1",
            "--depth", "1", "--db", db]
    first = cli("profile", *args, "--out", tmp_path / "a", "--trace", "--json")
    assert first.exit_code == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["schema"] == "archbench.profile/1" and data["derived"]["flops_match"] is True
    assert data["peaks"]["copy_gbps"] > 0 and data["peaks"]["tflops"] > 0
    assert (tmp_path / "a" / "roofline.png").is_file() and (tmp_path / "a" / "trace.json").is_file()
    assert "stored as run 1" in first.stderr
    second = cli("profile", *args, "--out", tmp_path / "b")
    assert second.exit_code == 0, second.stderr
    assert "coverage" in second.stdout and "profiling overhead" in second.stdout and "conv1" in second.stdout
    report = cli("report", "1", "--db", db, "--out", tmp_path / "r")
    assert report.exit_code == 0, report.stderr
    assert (tmp_path / "r" / "profile.md").is_file() and (tmp_path / "r" / "roofline.svg").is_file()
    diff = cli("diff", "1", "2", "--db", db, "--json")
    assert diff.exit_code in (0, 1), diff.stderr
    names = [layer["name"] for layer in json.loads(diff.stdout)["layers"]]
    assert names[:2] == ["(whole step, unprofiled)", ""] and "conv1" in names
    mixed = cli("diff", "1", tmp_path / "nothing.csv", "--db", db)
    assert mixed.exit_code == 2


def test_cli_profile_refuses_bad_options_before_measuring(cli, tmp_path):
    for args, message in ((["--mode", "infer,train"], "--mode"), (["--depth", "0"], "--depth"),
                          (["--min-steps", "9", "--max-steps", "3"], "--min-steps 9 is above --max-steps 3"),
                          (["--batch", "1,2"], "one batch size"), (["--json", "--markdown"], "exclusive")):
        result = cli("profile", "mnist-cnn", *args, "--out", tmp_path / "x")
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_profile_timed_under_load_says_so_and_a_quiet_one_does_not():
    from archbench.runs.profile import _Profiled, _warnings
    from archbench.timing.loadsignal import WindowLoad
    from archbench.timing.stats import Measurement

    steady = Measurement(tuple(10.0 + 0.01 * i for i in range(20)), (), "precision", 1.0, 0.03)
    profiled = _Profiled([], [], [], "precision")
    loaded = _warnings(profiled, steady, WindowLoad(10.0, 0.62, 1.4), spare_cores=1)
    assert any("busy with other work" in note and "62%" in note for note in loaded), loaded
    assert _warnings(profiled, steady, WindowLoad(10.0, 0.01, 0.1), spare_cores=1) == ()
    no_psi = _warnings(profiled, steady, WindowLoad(10.0, math.nan, 1.8), spare_cores=0)
    assert any("1.8 core(s) busy" in note for note in no_psi), no_psi
