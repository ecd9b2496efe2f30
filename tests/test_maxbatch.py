"""``--batch max`` (the search, its worker process and memory limit, the row), ``archbench memory`` and
``archbench.estimate_memory`` (the estimate by part, checked against a measured step)."""

from __future__ import annotations

import math
import textwrap

import pytest

from archbench.errors import UsageError
from archbench.parsing import parse_batches, parse_bytes
from archbench.rows import read_rows_csv
from archbench.sweep.maxbatch import Probe, search

MIB = 2**20


# ------------------------------------------------------------------------------------------ parsing


def test_batches_take_max_among_integers():
    assert parse_batches("1, 8,max,8") == [1, 8, "max"]
    assert parse_batches("MAX") == ["max"]
    with pytest.raises(UsageError, match="not a positive integer or max"):
        parse_batches("1,maximum")


def test_memory_sizes_binary_and_decimal():
    assert parse_bytes("8GiB", "--memory-limit") == 8 * 2**30
    assert parse_bytes("512M", "--memory-limit") == 512 * MIB
    assert parse_bytes("1.5 GB", "--memory-limit") == 1_500_000_000
    for bad in ("8 parsecs", "0GiB", "-1G", "", "2**70"):
        with pytest.raises(UsageError, match="--memory-limit"):
            parse_bytes(bad, "--memory-limit")


def test_limit_without_max_is_refused(cli, tmp_path):
    result = cli("bench", "mnist-cnn", "--batch", "8", "--memory-limit", "1GiB", "--out", tmp_path / "a.csv", "--no-db")
    assert result.exit_code == 2
    assert "--memory-limit bound the search of --batch max" in result.stderr


# ------------------------------------------------------------------------------------- the search


def _fits_up_to(largest: int):
    def probe(batch: int) -> Probe:
        return Probe(batch, batch <= largest)

    return probe


@pytest.mark.parametrize("start", [1, 8, 100, 5000])
def test_search_brackets_the_largest_batch_within_the_tolerance(start):
    batch, bound, probes = search(_fits_up_to(100), start=start, cap=None, limited=True)
    assert batch <= 100
    failed = min(p.batch for p in probes if not p.fits)
    assert failed > 100 and failed - batch <= max(1, math.floor(batch / 8))
    assert bound == "memory_limit"
    assert [p.batch for p in probes][0] == start


def test_search_stops_at_the_cap_and_says_so():
    batch, bound, probes = search(_fits_up_to(100), start=8, cap=50, limited=False)
    assert (batch, bound) == (50, "max_batch")
    assert [p.batch for p in probes] == [8, 16, 32, 50]


def test_search_with_nothing_fitting_finds_zero():
    batch, bound, probes = search(_fits_up_to(0), start=4, cap=None, limited=False)
    assert (batch, bound) == (0, "oom")
    assert [p.batch for p in probes] == [4, 2, 1]


# ----------------------------------------------------------------------------------- the estimate


def test_estimate_parts_of_a_linear_model_are_exact():
    import torch
    from torch import nn

    import archbench

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 512), nn.ReLU(), nn.Linear(512, 10))
    param_bytes = sum(p.numel() * 4 for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    estimate = archbench.estimate_memory(model, (3, 8, 8), batch=64, optimizer="adamw")
    assert estimate.parameters == param_bytes
    steps = 4 * 4  # AdamW: exp_avg and exp_avg_sq, and a one-element step count per parameter tensor
    assert estimate.optimizer_state == 2 * param_bytes + steps
    assert estimate.inputs == 64 * 3 * 8 * 8 * 4
    large = estimate.at(4096)  # activations dominate: the peak is in the backward, not the optimizer's step
    assert large.activations >= 4096 * 512 * 4  # at least the hidden layer's output, saved by ReLU
    momentum = archbench.estimate_memory(model, (3, 8, 8), batch=64, optimizer="sgd-momentum")
    assert momentum.optimizer_state == param_bytes
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the caller's model is untouched
    assert estimate.at(8192).activations == pytest.approx(2 * large.activations, rel=0.01)
    assert estimate.largest_batch(estimate.at(1000).total) == 1000


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd-momentum", "adamw"])
def test_estimate_within_15_percent_of_a_measured_step(optimizer):
    """The estimate against the peak resident set of a real training step in a fresh process (resnet18 at
    3x64x64, two batches)."""
    from archbench.catalog.refs import resolve_model
    from archbench.memory_estimate import estimate_memory
    from archbench.sweep.maxbatch import measure_step_peak

    source = resolve_model("resnet18")
    estimate = estimate_memory(source, (3, 64, 64), batch=1, optimizer=optimizer)
    for batch in (32, 128):
        measured = measure_step_peak(source, (3, 64, 64), batch, optimizer=optimizer)
        assert measured.fits
        assert estimate.at(batch).total == pytest.approx(measured.peak_bytes, rel=0.15), batch


def test_memory_command_table_and_budget(cli):
    result = cli("memory", "mnist-cnn", "--batch", "8,64", "--optimizer", "sgd-momentum", "--budget", "1GiB", "--json")
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.stdout)
    assert [b["batch"] for b in data["batches"]] == [8, 64]
    first, second = data["batches"]
    assert first["optimizer"] == first["parameters"] == second["optimizer"]  # momentum: one buffer per parameter
    assert second["activations"] > first["activations"]
    assert data["largest_batch"] > 64


def test_memory_command_refuses_an_optimizer_for_inference(cli):
    result = cli("memory", "mnist-cnn", "--mode", "infer", "--optimizer", "adam")
    assert result.exit_code == 2
    assert "an inference step has no optimizer" in result.stderr


# ------------------------------------------------------------------------------------ the worker


KILLER = textwrap.dedent("""
    import os, signal
    from torch import nn

    class Killer(nn.Module):
        '''Dies as the kernel's OOM killer would end it, from batch 64 on.'''
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, 10)

        def forward(self, x):
            if x.shape[0] >= 64:
                os.kill(os.getpid(), signal.SIGKILL)
            return self.fc(x.flatten(1))
""")


@pytest.mark.slow
def test_a_killed_worker_is_a_failed_probe_and_the_search_goes_on(tmp_path, monkeypatch):
    from archbench.catalog.refs import resolve_model
    from archbench.sweep.cells import Cell
    from archbench.sweep.maxbatch import MaxBatchSettings, find_max_batch

    (tmp_path / "killer.py").write_text(KILLER)
    monkeypatch.chdir(tmp_path)
    source = resolve_model("./killer.py:Killer")
    cell = Cell(source.name, source, "cpu", "train", 1, (3, 8, 8), threads=1)
    found = find_max_batch(cell, MaxBatchSettings(max_batch=1000))
    assert 32 <= found.batch < 64
    killed = [p for p in found.probes if not p.fits]
    assert killed and all("SIGKILL" in p.reason for p in killed)
    assert any(p.fits for p in found.probes if p.batch > min(k.batch for k in killed) // 2)  # a new worker went on


def _bench_max_then_check_in_a_fresh_worker(cli, tmp_path, model: str, input: str | None, limit: str,
                                            batches: str = "max"):
    """``bench MODEL --batch max --mode train --memory-limit LIMIT``; then the found batch runs under the limit in
    a fresh worker and twice it does not; the row says how it was found. Returns the found row."""
    from archbench.catalog.refs import resolve_model
    from archbench.sweep.cells import Cell
    from archbench.sweep.maxbatch import ProbeWorker, worker_setup

    out = tmp_path / "max.csv"
    shape = ["--input", input] if input else []
    result = cli("bench", model, *shape, "--batch", batches, "--mode", "train", "--memory-limit", limit,
                 "--max-time", "0.5", "--threads", "1", "--out", out, "--no-db")
    assert result.exit_code == 0, result.output  # the run survived every probe that ran out of memory
    found = read_rows_csv(out)[-1]
    limit_bytes = parse_bytes(limit, "--memory-limit")
    assert found.status == "ok" and found.max_batch_bound == "memory_limit"
    assert found.memory_limit_mb == limit_bytes / MIB and found.max_batch_predicted > 0
    probes = [p.strip().split(" ") for p in found.max_batch_probes.split(",")]
    assert [str(found.batch), "ok"] in probes and any(outcome == "oom" for _, outcome in probes)
    assert f"batch max ({model}" in result.stderr
    source = resolve_model(model)
    cell = Cell(source.name, source, "cpu", "train", 1, tuple(map(int, input.split("x"))) if input else source.input,
                threads=1)
    with ProbeWorker(worker_setup(cell, limit_bytes)) as fresh:
        assert fresh.probe(found.batch).fits
        assert not fresh.probe(2 * found.batch).fits
    return found


@pytest.mark.slow
def test_bench_batch_max_under_a_limit_finds_a_batch_that_runs_and_twice_it_does_not(cli, tmp_path):
    """The done-when of issue 25 on a tiny model and a small limit, with a batch given beside ``max``."""
    found = _bench_max_then_check_in_a_fresh_worker(cli, tmp_path, "mnist-cnn", None, "160MiB", batches="1,max")
    first = read_rows_csv(tmp_path / "max.csv")[0]
    assert first.batch == 1 and first.max_batch_bound == "" and found.batch > 1


@pytest.mark.slow
@pytest.mark.heavy
def test_bench_batch_max_of_resnet18_within_2gib(cli, tmp_path):
    """The done-when of issue 25 as written: resnet18 at 3x64x64 under a 2 GiB limit (minutes on a loaded CPU)."""
    found = _bench_max_then_check_in_a_fresh_worker(cli, tmp_path, "resnet18", "3x64x64", "2GiB")
    assert found.max_batch_predicted >= found.batch / 2  # the estimate started the search near the answer


def test_a_found_batch_keeps_how_it_was_found_through_a_work_unit(tmp_path, monkeypatch):
    """A found batch measured by a pool worker (from its work unit file) gets the same row fields as in the run's
    process; its peak memory above the limit the search ran under is said in the row's note."""
    from archbench.catalog.refs import resolve_model
    from archbench.execute.worker import run_work_unit
    from archbench.execute.workunits import make_work_unit, write_work_unit
    from archbench.sweep.cells import Cell
    from archbench.sweep.maxbatch import BatchSearch
    from archbench.timing.options import MeasureOptions

    monkeypatch.chdir(tmp_path)
    source = resolve_model("mnist-cnn")
    search = BatchSearch(4, "memory_limit", 6, (Probe(6, False, reason="can't allocate"), Probe(4, True)), 64 * 2**10,
                         "RLIMIT_DATA")
    cell = Cell(source.name, source, "cpu", "train", 4, source.input, threads=1, search=search)
    unit = make_work_unit([cell], MeasureOptions(max_time_s=0.1))
    (row,) = run_work_unit(write_work_unit(tmp_path / "u.unit.json", unit)).rows
    assert row.status == "ok" and row.batch == 4
    assert (row.max_batch_bound, row.max_batch_probes, row.max_batch_predicted, row.memory_limit_mb) == (
        "memory_limit", "6 oom, 4 ok", 6, 1 / 16)
    assert row.peak_mem_mb > 1 / 16  # weights and gradients alone are more than the 64 KiB limit said of the search
    assert "above the 64.0 KiB limit" in row.note and "not the process that timed the batch" in row.note


def test_peak_note_only_for_a_peak_above_the_search_limit():
    from archbench.sweep.maxbatch import BatchSearch, peak_note

    search = BatchSearch(100, "memory_limit", 90, (Probe(100, True),), 2048 * MIB)
    assert peak_note(search, 2000 * MIB) == ""
    assert peak_note(search, 2194 * MIB).startswith("peak memory 2.1 GiB is above the 2.0 GiB limit")
    assert peak_note(None, 2194 * MIB) == "" and peak_note(search, math.nan) == ""
    assert peak_note(BatchSearch(100, "oom", 0, (Probe(100, True),)), 2194 * MIB) == ""  # no limit recorded


# -------------------------------------------------------------------------------------- the knee


def _curve(samples_per_s: dict[int, float], found: int = 0):
    """Ok rows of one throughput curve, each with a ±20% CI of its time."""
    from archbench.rows import ResultRow

    rows = []
    for batch, rate in samples_per_s.items():
        median = batch / rate * 1e3
        rows.append(ResultRow("net", "cpu", "train", batch, "3x8x8", "fp32", threads=1, status="ok", n_samples=5,
                              median_ms=median, ci_low_ms=median * 0.8, ci_high_ms=median * 1.2, samples_per_s=rate,
                              max_batch_bound="memory_limit" if batch == found else ""))
    return rows


def test_knee_is_the_smallest_batch_within_5_percent_of_the_best():
    from archbench.report.knee import knees

    (knee,) = knees(_curve({1: 100.0, 8: 700.0, 64: 960.0, 512: 1000.0, 900: 990.0}, found=900))
    assert (knee.knee_batch, knee.best_batch, knee.max_batch, knee.max_bound, knee.points) == (64, 512, 900, "memory_limit", 5)
    assert knees(_curve({8: 700.0})) == []  # one batch is not a curve


def test_knee_and_max_labels_sit_beyond_the_ends_of_their_error_bars():
    import matplotlib

    matplotlib.use("Agg")
    from archbench.report.plots import throughput_figure
    from archbench.results.data import ModelInfo, ReportData
    from archbench.study import adhoc_study

    rows = _curve({1: 100.0, 8: 700.0, 64: 960.0, 512: 1000.0, 900: 990.0}, found=900)
    data = ReportData(study=adhoc_study(["net"]), rows=tuple(rows), models=(ModelInfo("net", "", "", "3x8x8"),))
    fig = throughput_figure(data)
    labels = {t.get_text(): t for t in fig.axes[0].texts}
    knee, top = labels["knee 64"], labels["max 900"]
    assert knee.xy == (64, pytest.approx(64 / (64 / 960 * 1.2)))  # under the bar's lower end (the slower CI end)
    assert knee.get_va() == "top" and knee.xyann[1] < 0
    assert top.xy == (900, pytest.approx(900 / (900 / 990 * 0.8)))  # over the bar's upper end
    assert top.get_va() == "bottom" and top.xyann[1] > 0
    low, high = fig.axes[0].get_ylim()
    assert low < knee.xy[1] and top.xy[1] < high  # room for both inside the panel
    import matplotlib.pyplot as plt

    plt.close(fig)
