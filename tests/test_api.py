"""The Python API on models defined here, in the test file: the same numbers as the CLI on the equivalent
spec, rows with FLOP rate and peak memory from ``bench``, a report from ``compare``, the caller's model
left untouched, and the exported names pinned."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archbench
from archbench import MeasureOptions, WarmupPolicy

# ---------------------------------------------------------------------------------- models, from the seeds


class LeNet(nn.Module):
    """Seed 002's MNIST CNN, written out again (not imported from archbench)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.max_pool2d(F.relu(self.conv1(x)), 2))), 2)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))))


class Block(nn.Module):
    """Seed 004's ResNeXt bottleneck (grouped first 1x1, as the seed code), cardinality 32, depth 4."""

    def __init__(self, cin, width, stride):
        super().__init__()
        inner, cout = 32 * (4 * width // 64), 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(cin, inner, 1, groups=32, bias=False), nn.BatchNorm2d(inner), nn.ReLU(),
            nn.Conv2d(inner, inner, 3, stride, 1, groups=32, bias=False), nn.BatchNorm2d(inner), nn.ReLU(),
            nn.Conv2d(inner, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


class ResNeXt50(nn.Module):
    def __init__(self, classes=100):
        super().__init__()
        layers, cin = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()], 64
        for n, width, stride in zip((3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2)):
            for i in range(n):
                layers.append(Block(cin, width, stride if i == 0 else 1))
                cin = 4 * width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.features(x))


COUNTED = ("params_total", "params_trainable", "buffers", "param_bytes", "macs", "macs_with_norm", "other_ops",
           "flops_forward", "flops_backward", "activation_bytes")


@pytest.mark.parametrize(("module", "spec", "input_size"), [
    (LeNet, "mnist-cnn", (1, 28, 28)),
    pytest.param(ResNeXt50, "resnext-50", (3, 32, 32), marks=pytest.mark.slow),
])
def test_summarize_a_module_matches_the_cli_summary_of_the_equivalent_spec(cli, module, spec, input_size):
    summary = archbench.summarize(module(), input_size)
    shown = cli("summary", spec, "--input", "x".join(map(str, input_size)), "--json")
    assert shown.exit_code == 0, shown.stderr
    expected = json.loads(shown.stdout)
    got = summary.to_dict()
    assert {k: got[k] for k in COUNTED} == {k: expected[k] for k in COUNTED}
    assert got["cross_check"]["agrees"] is True
    assert [row["macs"] for row in got["layers"] if row["depth"] == 1] != []
    assert summary.to_markdown().startswith("## archbench summary: LeNet" if module is LeNet else "## archbench summary")


def test_count_takes_a_tuple_or_dict_of_inputs():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.image, self.meta = nn.Linear(12, 4), nn.Linear(3, 4)

        def forward(self, image, meta):
            return self.image(image.flatten(1)) + self.meta(meta)

    image, meta = torch.randn(2, 3, 2, 2), torch.randn(2, 3)
    by_position = archbench.count(TwoInputs(), (image, meta))
    by_keyword = archbench.count(TwoInputs(), {"image": image, "meta": meta})
    assert by_position.macs == by_keyword.macs == 2 * (12 * 4 + 3 * 4)
    assert by_position.params_total == 12 * 4 + 4 + 3 * 4 + 4


def test_the_callers_model_is_left_as_it_was():
    model = LeNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    archbench.summarize(model, (1, 28, 28))
    rows = archbench.bench(model, (1, 28, 28), modes=("train",), options=MeasureOptions(precision=0.5, max_time_s=0.3))
    assert rows[0].status == "ok"
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not model._forward_hooks and not model._forward_pre_hooks


@pytest.mark.slow
def test_bench_returns_ok_rows_with_flop_rate_and_peak_memory():
    rows = archbench.bench(LeNet(), (1, 28, 28), batches=(1, 4), modes=("infer", "train"),
                           options=MeasureOptions(precision=0.5, max_time_s=0.3), threads=1)
    assert [(r.batch, r.mode) for r in rows] == [(1, "infer"), (1, "train"), (4, "infer"), (4, "train")]
    for row in rows:
        assert isinstance(row, archbench.ResultRow) and row.status == "ok" and row.model == "LeNet"
        assert row.achieved_tflops > 0 and math.isfinite(row.peak_fraction)
        assert row.peak_mem_mb >= 0 and len(row.samples_ms) == row.n_samples >= 5
    spec_counted = archbench.count("mnist-cnn")
    assert rows[0].flops_per_step == spec_counted.flops_forward
    assert rows[1].flops_per_step == spec_counted.flops_forward + spec_counted.flops_backward


def test_bench_with_an_input_factory():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 2)

        def forward(self, x, scale):
            return self.fc(x) * scale

    def make_inputs(batch, shape, dtype, device):
        return {"x": torch.randn(batch, 8, device=device), "scale": torch.ones(batch, 1, device=device)}

    rows = archbench.bench(Pair, (8, 1, 1), modes=("infer", "train"), make_inputs=make_inputs,
                           options=MeasureOptions(precision=0.5, max_time_s=0.2))
    assert [r.status for r in rows] == ["ok", "ok"], [r.error for r in rows]
    assert rows[0].flops_per_step == 2 * 8 * 2


def test_measure_keeps_raw_samples_on_a_scripted_timer():
    now = [0.0]

    def sample() -> float:  # every call takes 5 ms on the scripted clock
        now[0] += 0.005
        return 5.0

    m = archbench.measure(lambda: None, options=MeasureOptions(precision=0.01), sampler=sample, clock=lambda: now[0])
    assert m.stop_reason == "precision" and m.samples_ms == (5.0,) * 6
    assert len(m.warmup_ms) == 20  # the warm-up's minimum 0.1 s of 5 ms calls


@pytest.mark.slow
def test_compare_writes_the_cli_report_for_modules_and_names(tmp_path):
    result = archbench.compare({"lenet": LeNet(), "mnist-cnn": "mnist-cnn"}, inputs=[(1, 28, 28)], batches=(1,),
                               modes=("infer",), options=MeasureOptions(precision=0.5, max_time_s=0.2),
                               out_dir=tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "lenet" in report and "mnist-cnn" in report
    assert {r.model for r in result.data.rows} == {"lenet", "mnist-cnn"}
    assert all(r.status == "ok" for r in result.data.rows)


def test_compare_measures_with_all_of_its_options(tmp_path):
    """compare() hands the whole MeasureOptions to the sweep: its warm-up policy and max_samples too."""
    options = MeasureOptions(precision=1e-6, max_time_s=60, min_samples=2, max_samples=7,
                             warmup=WarmupPolicy(min_iters=4, max_iters=4))
    result = archbench.compare({"lenet": LeNet()}, inputs=[(1, 28, 28)], batches=(1,), modes=("infer",),
                               options=options, interleave=False, out_dir=tmp_path / "report")
    (row,) = result.data.rows
    assert (row.status, row.stop_reason, row.n_samples, row.warmup_iters) == ("ok", "max_samples", 7, 4)


def test_the_exported_names_are_pinned():
    assert sorted(archbench.__all__) == sorted([
        "ArchbenchError", "CellKey", "DeviceUnavailableError", "MeasureOptions", "ModelOutOfMemoryError",
        "ModelRunError", "ModelSource", "ModelSpec", "ModuleSource", "ResultRow", "SpecError", "StudyError",
        "UnknownModelError", "UsageError", "WarmupPolicy", "__version__", "bench", "build_model", "compare",
        "count", "count_params", "estimate_memory", "get_spec", "list_models", "measure", "profile", "register_family",
        "register_flop_formula", "summarize",
    ])
    assert all(hasattr(archbench, name) for name in archbench.__all__)
