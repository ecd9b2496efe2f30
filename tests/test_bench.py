"""`archbench bench` and the sweep behind it, on tiny models of a test family registered here.

The family's spec arguments switch on real failure modes: a real CPU allocator failure, a real
``torch.OutOfMemoryError``, a shape error in a named submodule, a KeyboardInterrupt at a given batch.
A module-level log records every forward call (batch, training flag, inference mode, gradient state),
so the tests can tell which cells really ran."""

from __future__ import annotations

import collections
import csv
import json
import math
import statistics
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from archbench.catalog.registry import get_spec, register_family
from archbench.rows import CSV_COLUMNS, read_rows_csv

FAMILY = "bench-test-net"
FORWARD_LOG: list[dict] = []  # one entry per (untraced) forward call of a test net
Out = collections.namedtuple("Out", ["logits", "aux"])

CONTRACT = ("model, device, mode, batch, input, dtype, channels_last, compiled, threads, backend, status, error, n_samples, "
            "median_ms, iqr_ms, ci_low_ms, ci_high_ms, min_ms, samples_per_s, flops_per_step, achieved_tflops, "
            "peak_fraction, peak_mem_mb").split(", ")
FAST = ("--max-time", "0.2", "--precision", "0.5")  # a few samples per cell


class TinyNet(nn.Module):
    """1xHxW -> flatten -> Linear(H*W, 10), with switchable failures keyed on the batch size."""

    def __init__(self, pixels: int, oom_at_batch: int, cuda_oom_at_batch: int, fail_at_batch: int,
                 interrupt_at_batch: int, scratch_mb: int, tuple_output: bool):
        super().__init__()
        self.head = nn.Linear(pixels, 10)
        self.bad_head = nn.Linear(pixels + 1, 10)  # wrong in_features: fails when used
        self.oom_at_batch, self.cuda_oom_at_batch, self.fail_at_batch = oom_at_batch, cuda_oom_at_batch, fail_at_batch
        self.interrupt_at_batch, self.scratch_mb, self.tuple_output = interrupt_at_batch, scratch_mb, tuple_output

    def forward(self, x):
        batch = x.shape[0]
        # fvcore's trace and the counters' shape-only forward on a meta twin are no timed forward
        if not torch.jit.is_tracing() and not x.is_meta:
            FORWARD_LOG.append({"batch": batch, "training": self.training, "inference": torch.is_inference_mode_enabled(),
                                "grads_none": all(p.grad is None for p in self.parameters())})
        if self.interrupt_at_batch and batch >= self.interrupt_at_batch:
            raise KeyboardInterrupt
        if self.oom_at_batch and batch >= self.oom_at_batch:
            torch.empty(1 << 50)  # 4 PiB: torch's CPU allocator really fails
        if self.cuda_oom_at_batch and batch >= self.cuda_oom_at_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if self.scratch_mb:
            torch.ones(self.scratch_mb * 2**18)  # scratch_mb MiB of float32, touched, then freed
        flat = x.flatten(1)
        logits = self.bad_head(flat) if self.fail_at_batch and batch >= self.fail_at_batch else self.head(flat)
        return Out(logits, logits.detach()) if self.tuple_output and self.training else logits


@register_family(FAMILY)
def bench_test_net(pixels: int = 64, oom_at_batch: int = 0, cuda_oom_at_batch: int = 0, fail_at_batch: int = 0,
                   interrupt_at_batch: int = 0, scratch_mb: int = 0, tuple_output: bool = False) -> nn.Module:
    return TinyNet(pixels, oom_at_batch, cuda_oom_at_batch, fail_at_batch, interrupt_at_batch, scratch_mb, tuple_output)


def write_spec(directory: Path, name: str, **args) -> None:
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in args.items())
    (directory / f"{name}.toml").write_text(textwrap.dedent(f"""\
        name = "{name}"
        family = "{FAMILY}"
        description = "bench test net"
        input = "1x8x8"
        [args]
        """) + body + "\n", encoding="utf-8")


@pytest.fixture
def specs(tmp_path):
    directory = tmp_path / "specs"
    directory.mkdir()
    write_spec(directory, "tnet")
    write_spec(directory, "tnet-oom", oom_at_batch=2)
    write_spec(directory, "tnet-cuda-oom", cuda_oom_at_batch=2)
    write_spec(directory, "tnet-fail", fail_at_batch=2)
    write_spec(directory, "tnet-interrupt", interrupt_at_batch=3)
    write_spec(directory, "tnet-scratch", scratch_mb=64)
    write_spec(directory, "tnet-tuple", tuple_output=True)
    FORWARD_LOG.clear()
    return directory


def timed_batches() -> set[int]:
    """Batches of the forwards timed in infer cells (inference mode); FLOP counting runs its forward in
    training mode, so it is not mistaken for a measurement."""
    return {e["batch"] for e in FORWARD_LOG if e["inference"]}


def bench(cli, specs, *args):
    return cli("bench", *args, "--specs", specs, *FAST)


def csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


# ------------------------------------------------------------------------------------- schema and JSON


@pytest.mark.slow
def test_csv_schema_and_row_statistics(cli, specs, tmp_path):
    out = tmp_path / "r.csv"
    result = bench(cli, specs, "tnet", "--batch", "1,4", "--threads", "1", "--out", out)
    assert result.exit_code == 0, result.stderr
    header = csv_header(out)
    assert header == list(CSV_COLUMNS)
    assert header[: len(CONTRACT)] == CONTRACT  # the contract, in order, first
    rows = read_rows_csv(out)
    assert [(r.model, r.mode, r.batch) for r in rows] == [("tnet", "infer", 1), ("tnet", "train", 1),
                                                          ("tnet", "infer", 4), ("tnet", "train", 4)]
    for r in rows:
        assert (r.device, r.input, r.dtype, r.threads, r.status) == ("cpu", "1x8x8", "fp32", 1, "ok")
        assert r.n_samples >= 5 and r.warmup_iters >= 1 and r.stop_reason in ("precision", "max_time")
        assert r.min_ms <= r.ci_low_ms <= r.median_ms <= r.ci_high_ms
        assert r.samples_per_s == pytest.approx(r.batch / (r.median_ms / 1e3), rel=1e-4)
        assert r.noisy == (r.iqr_ms / r.median_ms > 0.10)
        assert r.peak_mem_mb >= 0
    assert "4 of 4 cells · 1x8x8 · cpu · fp32 · threads 1" in result.stdout  # the table; shared values in its title
    assert "tnet" in result.stdout and "median" in result.stdout
    assert str(out) in result.stderr


@pytest.mark.slow
def test_json_has_raw_samples_and_the_environment(cli, specs, tmp_path):
    out = tmp_path / "r.csv"
    result = bench(cli, specs, "tnet", "--mode", "infer", "--threads", "1", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    env = data["environment"]
    for key in ("archbench", "python", "torch", "cuda", "cudnn", "devices", "cpu_model", "threads", "tf32_matmul",
                "cudnn_benchmark", "platform", "date"):
        assert key in env
    assert env["threads"] == 1 and list(env["devices"]) == ["cpu"]
    [row] = data["rows"]
    assert len(row["samples_ms"]) == row["n_samples"] >= 5
    assert row["median_ms"] == pytest.approx(statistics.median(row["samples_ms"]), rel=1e-5)
    assert row["min_ms"] == pytest.approx(min(row["samples_ms"]), rel=1e-5)
    [from_csv] = read_rows_csv(out)
    assert from_csv.median_ms == row["median_ms"] and from_csv.n_samples == row["n_samples"]
    recorded = json.loads((tmp_path / "r.env.json").read_text())
    assert recorded[0]["torch"] == torch.__version__


@pytest.mark.slow
def test_threads_are_recorded_either_way(cli, specs, tmp_path):
    result = bench(cli, specs, "tnet", "--mode", "infer", "--out", tmp_path / "a.csv")
    assert result.exit_code == 0, result.stderr
    assert [r.threads for r in read_rows_csv(tmp_path / "a.csv")] == [torch.get_num_threads()]
    result = bench(cli, specs, "tnet", "--mode", "infer", "--threads", "1", "--out", tmp_path / "b.csv")
    assert [r.threads for r in read_rows_csv(tmp_path / "b.csv")] == [1]


@pytest.mark.slow
def test_modes_follow_the_method(cli, specs, tmp_path):
    """infer: eval() + inference_mode; train: train(), gradients None before each forward."""
    result = bench(cli, specs, "tnet", "tnet-tuple", "--out", tmp_path / "r.csv")
    assert result.exit_code == 0, result.stderr
    assert [r.status for r in read_rows_csv(tmp_path / "r.csv")] == ["ok"] * 4  # tuple logits in train mode too
    infer = [e for e in FORWARD_LOG if not e["training"]]
    train = [e for e in FORWARD_LOG if e["training"]]
    assert infer and all(e["inference"] for e in infer)
    assert train and not any(e["inference"] for e in train) and all(e["grads_none"] for e in train)


@pytest.mark.slow
def test_peak_memory_counts_scratch_allocated_in_the_forward(cli, specs, tmp_path):
    out = tmp_path / "r.csv"
    result = bench(cli, specs, "tnet", "tnet-scratch", "--mode", "infer", "--out", out)
    assert result.exit_code == 0, result.stderr
    plain, scratch = read_rows_csv(out)
    assert 64 - 4 <= scratch.peak_mem_mb < 64 + 48  # RSS: a few pages may be trimmed meanwhile
    assert 64 - 16 <= scratch.peak_mem_mb - plain.peak_mem_mb <= 64 + 16


# ---------------------------------------------------------------------------------- failures are rows


@pytest.mark.slow
def test_cpu_allocator_oom_is_a_row_and_the_sweep_goes_on(cli, specs, tmp_path):
    out = tmp_path / "r.csv"
    result = bench(cli, specs, "tnet-oom", "tnet", "--batch", "1,2", "--mode", "infer", "--out", out)
    assert result.exit_code == 0, result.stderr
    rows = read_rows_csv(out)
    # the two models of each batch are timed together (interleaved): the CSV holds the rows batch by batch
    assert [(r.model, r.batch, r.status) for r in rows] == [("tnet-oom", 1, "ok"), ("tnet", 1, "ok"),
                                                            ("tnet-oom", 2, "oom"), ("tnet", 2, "ok")]
    assert "out of memory on cpu at batch 2" in rows[2].error and "can't allocate memory" in rows[2].error
    assert math.isnan(rows[2].median_ms) and rows[2].n_samples == 0  # no silently smaller batch
    assert "oom" in result.stdout


@pytest.mark.slow
def test_torch_out_of_memory_error_is_an_oom_row(specs, tmp_path):
    from archbench.sweep.cells import plan_cells
    from archbench.sweep.run import run_sweep
    from archbench.timing.options import MeasureOptions

    cells = plan_cells([get_spec("tnet-cuda-oom", [specs]), get_spec("tnet", [specs])], ["cpu"], [2], None,
                       ["train"], ["fp32"])
    result = run_sweep(cells, tmp_path / "r.csv", resume=False, options=MeasureOptions(max_time_s=0.2, precision=0.5))
    assert [(r.model, r.status) for r in result.measured] == [("tnet-cuda-oom", "oom"), ("tnet", "ok")]
    assert "CUDA out of memory. Tried to allocate 20.00 GiB" in result.measured[0].error
    assert [r.status for r in read_rows_csv(tmp_path / "r.csv")] == ["oom", "ok"]


@pytest.mark.slow
def test_failing_forward_is_an_error_row_naming_the_module(cli, specs, tmp_path):
    out = tmp_path / "r.csv"
    result = bench(cli, specs, "tnet-fail", "--batch", "1,2", "--mode", "infer", "--out", out)
    assert result.exit_code == 0, result.stderr
    ok, failed = read_rows_csv(out)
    assert (ok.status, failed.status) == ("ok", "error")
    assert "bad_head" in failed.error  # located by archbench.costs.locate.forward_located
    assert "error" in result.stdout and "bad_head" in result.stderr


# ------------------------------------------------------------------------------------ resume, Ctrl-C


@pytest.mark.slow
def test_resume_skips_finished_cells(cli, specs, tmp_path):
    out = tmp_path / "r.csv"
    assert bench(cli, specs, "tnet", "--batch", "1", "--mode", "infer", "--out", out).exit_code == 0
    assert timed_batches() == {1}
    FORWARD_LOG.clear()
    result = bench(cli, specs, "tnet", "--batch", "1,2", "--mode", "infer", "--out", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert timed_batches() == {2}  # batch 1 was not measured again
    assert [r.batch for r in read_rows_csv(out)] == [1, 2]
    assert "1 of 2 cells are already in the CSV" in result.stderr


@pytest.mark.slow
def test_ctrl_c_keeps_finished_rows_and_resume_finishes_the_rest(cli, specs, tmp_path):
    out = tmp_path / "r.csv"
    result = bench(cli, specs, "tnet-interrupt", "--batch", "1,2,3,4", "--mode", "infer", "--out", out)
    assert result.exit_code == 130
    assert [(r.batch, r.status) for r in read_rows_csv(out)] == [(1, "ok"), (2, "ok")]
    assert csv_header(out) == list(CSV_COLUMNS)
    assert "2 of 4 cells are saved" in result.stderr and "--resume" in result.stderr
    resume_line = result.stderr.split("Resume with:")[1].strip()
    assert resume_line.startswith("archbench bench tnet-interrupt") and f"--out {out} --resume" in resume_line

    write_spec(specs, "tnet-interrupt")  # the same model, no longer interrupting
    FORWARD_LOG.clear()
    result = bench(cli, specs, "tnet-interrupt", "--batch", "1,2,3,4", "--mode", "infer", "--out", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert timed_batches() == {3, 4}
    assert [(r.batch, r.status) for r in read_rows_csv(out)] == [(1, "ok"), (2, "ok"), (3, "ok"), (4, "ok")]


@pytest.mark.slow
def test_library_sweep_reports_progress_and_interruption(specs, tmp_path):
    from archbench.sweep.cells import plan_cells
    from archbench.sweep.run import SweepListener, run_sweep
    from archbench.timing.options import MeasureOptions

    events = []

    class Recorder(SweepListener):
        def sweep_started(self, total, already_done):
            events.append(("start", total, already_done))

        def cell_phase(self, cell, phase):
            events.append(("phase", cell.batch, phase))

        def cell_finished(self, cell, row, index, todo):
            events.append(("done", cell.batch, row.status, (tmp_path / "r.csv").exists()))

    cells = plan_cells([get_spec("tnet-interrupt", [specs])], ["cpu"], [1, 2, 3], None, ["infer"], ["fp32"], threads=1)
    assert [c.key() for c in cells] == [("tnet-interrupt", "cpu", "infer", b, "1x8x8", "fp32", False, False, 1, "eager")
                                        for b in (1, 2, 3)]
    result = run_sweep(cells, tmp_path / "r.csv", resume=False, options=MeasureOptions(max_time_s=0.2, precision=0.5), listener=Recorder())
    assert result.interrupted and result.remaining == 1 and len(result.measured) == 2
    assert [r.key() for r in result.rows] == [c.key() for c in cells[:2]]
    assert events[0] == ("start", 3, 0)
    assert [e for e in events if e[0] == "done"] == [("done", 1, "ok", True), ("done", 2, "ok", True)]
    assert ("phase", 1, "warming up") in events and ("phase", 1, "sampling") in events


@pytest.mark.slow
def test_out_file_with_results_needs_resume(cli, specs, tmp_path):
    out = tmp_path / "r.csv"
    assert bench(cli, specs, "tnet", "--mode", "infer", "--out", out).exit_code == 0
    before = out.read_text()
    result = bench(cli, specs, "tnet", "--mode", "infer", "--out", out)
    assert result.exit_code == 2 and "already holds results: pass --resume" in result.stderr
    assert out.read_text() == before


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batch", "0"), "--batch value '0' is not a positive integer"),
        (("--batch", "1,x"), "--batch value 'x' is not a positive integer"),
        (("--input", "3x32"), "--input '3x32' is not an input shape"),
        (("--dtype", "fp64"), "--dtype value 'fp64' is not one of: fp32, bf16, fp16"),
        (("--mode", "fly"), "--mode value 'fly' is not one of: infer, train"),
        (("--device", "tpu"), "--device value 'tpu' is not a device: expected cpu, cuda or cuda:N"),
        (("--threads", "0"), "--threads value '0' is not a positive integer"),
        (("--precision", "2"), "--precision '2' is not a fraction between 0 and 1"),
        (("--max-time", "-1"), "--max-time '-1' is not a number of seconds between 0 and 86,400"),
        (("--resume",), "--resume needs --out FILE"),
        (("--specs", "{specs}", "tnet-nope"), "unknown model 'tnet-nope'"),
    ],
)
def test_bad_values_are_clear_errors(cli, specs, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    args = tuple(str(specs) if a == "{specs}" else a for a in args)
    result = cli("bench", "mnist-cnn", *args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "reports").exists()  # nothing ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_fails_before_anything_runs(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("bench", "mnist-cnn", "--device", "cuda")
    assert result.exit_code == 2
    assert "--device cuda was asked for, but torch sees no CUDA GPU" in result.stderr
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_default_out_is_under_reports(cli, specs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = bench(cli, specs, "tnet", "--mode", "infer")
    assert result.exit_code == 0, result.stderr
    [written] = list((tmp_path / "reports").glob("bench-*.csv"))
    assert [r.model for r in read_rows_csv(written)] == ["tnet"]
    assert (tmp_path / "reports" / (written.stem + ".env.json")).exists()


@pytest.mark.slow
def test_a_real_sigint_saves_finished_rows_and_exits_130(tmp_path):
    """Ctrl-C as the terminal sends it: SIGINT to a separate `python -m archbench` process."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "archbench", "bench", "mnist-cnn", "--batch", ",".join(map(str, range(1, 41))),
         "--mode", "infer", "--max-time", "0.3", "--threads", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    rows = read_rows_csv(out)
    assert 2 <= len(rows) < 40 and [r.batch for r in rows] == list(range(1, len(rows) + 1))
    assert all(r.status == "ok" and r.n_samples >= 5 for r in rows)
    assert f"{len(rows)} of 40 cells are saved" in stderr and "--resume" in stderr


def test_argument_errors_do_not_import_torch(tmp_path):
    import subprocess
    import sys

    probe = ("import sys\nfrom archbench.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('TORCH=' + str('torch' in sys.modules), file=sys.stderr)\n")
    for args in (["bench", "mnist-cnn", "--batch", "0"], ["bench", "mnist-cnn", "--dtype", "fp64"]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=tmp_path)
        assert "error:" in proc.stderr and "TORCH=False" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_flops_and_peak_fraction(cli, specs, tmp_path):
    """tnet is one Linear(64 -> 10) on a 1x8x8 input: 64 x 10 MACs = 1,280 FLOPs per sample forward; the
    backward computes only the weight gradient (the input needs none): another 1,280."""
    pytest.importorskip("archbench.costs.summary")
    result = bench(cli, specs, "tnet", "--batch", "1,4", "--threads", "1", "--out", tmp_path / "r.csv", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    flops = {(r["mode"], r["batch"]): r["flops_per_step"] for r in data["rows"]}
    assert flops == {("infer", 1): 1280, ("train", 1): 2560, ("infer", 4): 5120, ("train", 4): 10240}
    peak = data["peaks_tflops"]["cpu/fp32"]
    assert peak > 0
    for r in data["rows"]:
        assert r["error"] == ""
        assert r["achieved_tflops"] == pytest.approx(r["flops_per_step"] / (r["median_ms"] / 1e3) / 1e12, rel=1e-4)
        assert r["peak_fraction"] == pytest.approx(r["achieved_tflops"] / peak, rel=1e-4)
