"""GPU and torch.compile paths, proven on this CPU-only machine: real torch.compile (Dynamo, eager
backend), real exceptions raised from a model's forward with the messages CUDA, cuDNN and cuBLAS use,
and the device parsing and error paths for ``cuda:N``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archbench.catalog.registry import register_family
from archbench.catalog.spec import ModelSpec
from archbench.errors import DeviceUnavailableError, ModelOutOfMemoryError, UsageError
from archbench.oom import is_out_of_memory, oom_reason
from archbench.parsing import parse_device
from archbench.sweep.cell_measure import RunCaches
from archbench.sweep.cells import plan_cells
from archbench.sweep.run import run_sweep
from archbench.timing.compiled import compiled_frames
from archbench.timing.devices import capability_message, parse_devices
from archbench.timing.options import MeasureOptions

FAMILY = "gpu-paths-test-net"

# What each library says when memory runs out (torch 2.14's own texts, and cuDNN v8/v9's).
OOM_MESSAGES = [
    "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total capacity)",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "Unable to find a valid cuDNN algorithm to run convolution",
    "GET was unable to find an engine to execute this computation",
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 3686400000 bytes. Error code 12 (Cannot allocate memory)",
]


class ScriptedNet(nn.Module):
    """A linear classifier whose forward raises ``RuntimeError(message)`` when given one, and whose
    forward changes with a Python counter after ``drift_after`` calls (Dynamo must recompile then)."""

    def __init__(self, message: str, drift_after: int, warmup_scratch_mb: int):
        super().__init__()
        self.head = nn.Linear(64, 10)
        self.message, self.drift_after, self.calls = message, drift_after, 0
        self.warmup_scratch_mb, self.timed_calls = warmup_scratch_mb, 0

    def forward(self, x):
        if self.message and not torch.jit.is_tracing():
            raise RuntimeError(self.message)
        if self.warmup_scratch_mb and torch.is_inference_mode_enabled():  # timed infer calls (never counting)
            self.timed_calls += 1
            if self.timed_calls <= 3:  # like cuDNN autotuning: workspaces only while warming up
                torch.ones(self.warmup_scratch_mb * 2**18).sum()
        logits = self.head(x.flatten(1))
        if self.drift_after:
            self.calls += 1  # Dynamo guards on this Python int: every call needs another graph
            if self.calls > self.drift_after:
                logits = logits * 2
        return logits


@register_family(FAMILY)
def scripted_net(message: str = "", drift_after: int = 0, warmup_scratch_mb: int = 0) -> nn.Module:
    return ScriptedNet(message, drift_after, warmup_scratch_mb)


def spec(**args) -> ModelSpec:
    return ModelSpec("scripted", FAMILY, (1, 8, 8), args=args)


def sweep(tmp_path, model_spec, batches, *, mode=("infer",), compiled=False, listener=None, max_time_s=0.3, caches=None):
    cells = plan_cells([model_spec], ["cpu"], batches, None, list(mode), ["fp32"], compiled=compiled, threads=1)
    return run_sweep(cells, tmp_path / "r.csv", resume=False, options=MeasureOptions(precision=0.5, max_time_s=max_time_s),
                     listener=listener, caches=caches)


# ------------------------------------------------------------------------------------------- compile


class FramesPerCell:
    def __init__(self):
        self.frames: list[int] = []

    def cell_finished(self, cell, row, index, todo):
        self.frames.append(compiled_frames())


@pytest.fixture
def eager_backend(monkeypatch):
    monkeypatch.setenv("ARCHBENCH_COMPILE_BACKEND", "eager")  # Dynamo's capture, no code generation


@pytest.mark.slow
def test_every_compiled_cell_is_compiled_statically_and_compile_time_is_not_sampled(tmp_path, eager_backend):
    """12 batch sizes of one architecture: without a Dynamo reset per cell, the 9th would hit the
    recompile limit and run eager, and the 2nd on would be compiled with a symbolic batch."""
    listener = FramesPerCell()
    result = sweep(tmp_path, spec(), list(range(1, 13)), mode=("infer", "train"), compiled=True, listener=listener)
    rows = result.rows
    assert len(rows) == 24 and all(r.status == "ok" and r.compiled for r in rows), [r.error for r in rows]
    assert listener.frames == [1] * 24  # Dynamo's own counter: exactly one compiled frame per cell, none eager
    for r in rows:
        assert math.isfinite(r.compile_s) and r.compile_s > 0
        assert r.compile_s * 1e3 > max(r.samples_ms)  # the compiling call is not among the samples
        assert r.median_ms < 0.5 * r.compile_s * 1e3


@pytest.mark.slow
def test_a_recompile_while_sampling_is_an_error_row_not_a_silent_eager_run(tmp_path, eager_backend):
    """The model's forward changes after a few calls (a Python attribute Dynamo guards on), so it must
    recompile while being timed: that cell is an error row saying so."""
    result = sweep(tmp_path, spec(drift_after=3), [1], compiled=True)
    [row] = result.rows
    assert row.status == "error" and "recompiled the model while it was being timed" in row.error


@pytest.mark.slow
def test_uncompiled_cells_have_no_compile_time(tmp_path):
    [row] = sweep(tmp_path, spec(), [2]).rows
    assert row.status == "ok" and math.isnan(row.compile_s)


# ------------------------------------------------------------------------------ peak memory and peak


@pytest.mark.slow
def test_peak_memory_leaves_out_what_only_the_warm_up_allocated(tmp_path):
    """256 MiB touched in each of the first three timed calls (the warm-up), none after: the cell's peak
    is the model and its activations, a few MiB, not the warm-up's workspace."""
    # a warm-up budget (a quarter of the cell's) that three 256 MiB calls fit on a slow machine too
    [row] = sweep(tmp_path, spec(warmup_scratch_mb=256), [1], max_time_s=8).rows
    assert row.status == "ok" and row.warmup_iters >= 3, row
    assert row.peak_mem_mb < 64, row.peak_mem_mb


class PeakBeforeCells:
    def __init__(self, caches):
        self.caches = caches
        self.cached_before: list[bool] = []

    def cell_started(self, cell, index, todo):
        self.cached_before.append(self.caches.peaks.is_measured(cell.device, cell.dtype, cell.threads))


@pytest.mark.slow
def test_the_device_peak_is_measured_before_the_first_cell_not_inside_one(tmp_path):
    caches = RunCaches()
    listener = PeakBeforeCells(caches)
    rows = sweep(tmp_path, spec(), [1, 2], listener=listener, caches=caches).rows
    assert listener.cached_before == [True, True]
    assert all(r.status == "ok" and r.peak_fraction > 0 for r in rows)


# ----------------------------------------------------------------------------------------------- oom


@pytest.mark.parametrize("message", OOM_MESSAGES)
@pytest.mark.slow
def test_every_out_of_memory_message_is_an_oom_row(tmp_path, message):
    result = sweep(tmp_path, spec(message=message), [1, 2])
    assert [r.status for r in result.rows] == ["oom", "oom"], [r.error for r in result.rows]
    assert oom_reason(RuntimeError(message)) in result.rows[0].error


def test_other_runtime_errors_are_not_out_of_memory():
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x64 and 65x10)"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only what allocators raise


def test_out_of_memory_wrapped_by_archbench_or_chained_is_still_out_of_memory():
    """An OOM while counting FLOPs arrives as ModelOutOfMemoryError (raised from the allocator's error):
    the one classifier sees it, so it is an oom row, not a cached 'FLOPs not counted' note."""
    cause = RuntimeError(OOM_MESSAGES[0])
    try:
        try:
            raise cause
        except RuntimeError as exc:
            raise ModelOutOfMemoryError("model 'x' ran out of memory on cuda:0") from exc
    except ModelOutOfMemoryError as wrapped:
        assert is_out_of_memory(wrapped)
        assert oom_reason(wrapped) == oom_reason(cause)
    try:
        try:
            raise cause
        except RuntimeError:
            raise ValueError("while counting")  # noqa: B904 - an implicit chain, as library code leaves it
    except ValueError as chained:
        assert is_out_of_memory(chained)


# ------------------------------------------------------------------------------------------- devices


def test_cuda_n_is_a_device_name_everywhere():
    assert parse_device("cuda:1") == "cuda:1" and parse_device("cuda:01") == "cuda:1"
    assert parse_device(" cuda ") == "cuda" and parse_device("cpu") == "cpu"
    for bad in ("cuda:", "cuda:x", "cuda:-1", "cpu:0", "gpu", "cuda1", ""):
        with pytest.raises(UsageError, match="expected cpu, cuda or cuda:N"):
            parse_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU error paths need a machine without a GPU")
def test_cuda_n_without_a_gpu_says_why_before_anything_runs(cli):
    with pytest.raises(DeviceUnavailableError, match="--device cuda:1 was asked for, but torch sees no CUDA GPU"):
        parse_devices("cpu,cuda:1")
    result = cli("bench", "mnist-cnn", "--device", "cuda:1")
    assert result.exit_code == 2 and "cuda:1" in result.stderr and "Traceback" not in result.output


def test_study_files_accept_cuda_n_and_apply_the_cuda_table():
    from archbench.study import study_from_mapping

    study = study_from_mapping({"models": ["mnist-cnn"], "grid": {"devices": ["cpu", "cuda:1"], "batches": [1],
                                                                  "cuda": {"batches": [32]}}}, name="s")
    assert study.grid.devices == ("cpu", "cuda:1")
    assert study.grid.for_device("cuda:1").batches == (32,) and study.grid.for_device("cpu").batches == (1,)


def test_a_gpu_this_torch_build_has_no_kernels_for_is_named():
    arch = ["sm_75", "sm_80", "sm_86", "sm_90", "compute_90"]
    assert capability_message("A100", (8, 0), arch, "2.14.1") is None
    assert capability_message("H200", (10, 0), arch, "2.14.1") is None  # PTX for 9.0 is JIT-compiled
    message = capability_message("Tesla P100", (6, 0), arch, "2.14.1")
    assert "compute capability 6.0" in message and "Tesla P100" in message and "sm_75" in message


def test_bf16_before_ampere_is_unsupported_not_emulated():
    from archbench.timing.devices import bf16_message, unsupported_dtype

    assert bf16_message("NVIDIA A100", (8, 0)) is None and bf16_message("H100", (9, 0)) is None
    message = bf16_message("Tesla V100", (7, 0))
    assert "compute capability 8.0" in message and "Tesla V100 has 7.0" in message
    assert unsupported_dtype("cpu", "bf16") is None and unsupported_dtype("cuda:0", "fp32") is None


def test_tf32_is_read_through_the_new_api_without_raising():
    """After the new API is used, torch raises on the legacy getters; archbench reads the new ones."""
    from archbench.env.environment import environment
    from archbench.timing.precision import Tf32Settings, dtype_label, resolve, tf32_settings

    matmul = torch.backends.cuda.matmul.fp32_precision
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        with pytest.raises(RuntimeError, match="mix of the legacy and new APIs"):
            torch.get_float32_matmul_precision()
        assert tf32_settings() == Tf32Settings(matmul=True, conv=torch.backends.cudnn.conv.fp32_precision == "tf32")
        assert environment(["cpu"])["tf32_matmul"] is True  # the run's record does not raise either
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        assert tf32_settings().matmul is False
    finally:
        torch.backends.cuda.matmul.fp32_precision = matmul
    assert resolve("none", "tf32", "ieee") == "tf32" and resolve("none", "none") == "ieee"
    convs_only = Tf32Settings(matmul=False, conv=True)  # torch's defaults
    assert dtype_label("cuda:0", "fp32", convs_only) == "fp32 (tf32)"
    assert dtype_label("cpu", "fp32", convs_only) == "fp32" and dtype_label("cuda", "bf16", convs_only) == "bf16"


def test_gpu_fields_of_the_environment_are_present_and_null_without_a_gpu():
    from archbench.env.environment import environment
    from archbench.env.gpu import gpu_environment, nvidia_driver_version

    record = gpu_environment()
    assert set(record) == {"gpu_driver", "gpu_count", "gpus"}
    assert set(record) <= set(environment(["cpu"]))
    if not torch.cuda.is_available():
        assert record["gpu_count"] == 0 and record["gpus"] is None
    sample = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version: gcc"
    assert nvidia_driver_version(sample) == "550.54.15"
    open_module = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.10  Release Build"
    assert nvidia_driver_version(open_module) == "570.86.10"
    assert nvidia_driver_version("no driver here") is None


def test_fp32_rows_that_ran_as_tf32_are_labelled_so():
    from archbench.report.tables import table_keys
    from archbench.rows import ResultRow

    rows = [ResultRow("m", "cuda:0", "infer", 1, "3x32x32", "fp32", tf32=True),
            ResultRow("m", "cpu", "infer", 1, "3x32x32", "fp32")]
    assert [k.title() for k in table_keys(rows)] == ["cuda:0 · infer · fp32 (tf32)", "cpu · infer · fp32"]
