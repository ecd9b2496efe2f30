"""One cell measured: its model built and stepped on its device, timed with the adaptive timer
(:func:`archbench.timing.timer.measure`), its FLOPs counted once per run (:class:`RunCaches`) and its row
made — an OOM or a failing model is a row with status ``oom``/``error``, never an exception. The sweep
(:mod:`archbench.sweep.run`) and the interleaved rounds (:mod:`archbench.sweep.interleave`) both measure
cells through :class:`PreparedCell`.

torch is imported inside functions only, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from archbench.errors import ArchbenchError, ModelRunError
from archbench.inputs import ModelInputs
from archbench.oom import is_out_of_memory, oom_reason
from archbench.rows import ResultRow, backend_kind
from archbench.sweep.cells import Cell
from archbench.timing.backends import (
    EXPORTED,
    compile_mode,
    forward_output,
    numerics_note,
    output_error,
    prepare,
    unsupported_backend,
)
from archbench.timing.compiled import compile_model, no_recompiles, run_compiling_call
from archbench.timing.devices import unsupported_dtype
from archbench.timing.loadsignal import LoadProbe, LoadWindows
from archbench.timing.options import MeasureOptions
from archbench.timing.peak import DevicePeaks
from archbench.timing.precision import runs_as_tf32, tf32_settings
from archbench.timing.step import autocast_for, make_images, make_step
from archbench.units import round_sig as _sig  # the rows' stored figures: 6 significant digits


class RunCaches:
    """What one run measures once and reuses across its cells: the device peaks and the FLOPs per sample
    of each model and input. Owned by the run (no module-level cache): a resumed run starts from the peaks
    stored with its first part, and two runs in one process never share a figure."""

    def __init__(self, peaks: DevicePeaks | None = None):
        self.peaks = peaks if peaks is not None else DevicePeaks()
        self.flop_counts: dict[tuple, tuple[float, float, str]] = {}  # (source, input[, batch]) -> fwd, bwd, note
        self.probes: dict = {}  # a failing model's working input sizes (archbench.costs.locate.probes_kept)


def warm_process(device: str, *, counters: bool = True) -> None:
    """Run a tiny convolutional forward/backward once, and count its FLOPs as a cell's are counted, so
    one-time process set-up is not charged to the first cell's time or peak memory: the thread pool,
    oneDNN / cuDNN handles, the CUDA context, and what the counters load on their first call (torch's
    dispatch-mode machinery imports torch._dynamo, sympy and triton's Python package: ~170 MB resident on
    CPU, which the first cell's peak memory used to include, its baseline being read before it counts).
    ``counters=False`` for a process that never counts (a max-batch probe worker): ~3 s of CPU saved."""
    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 3 * 3, 2)).to(device)
    x = torch.randn(2, 3, 8, 8, device=device)
    net(x).sum().backward()
    with torch.inference_mode():
        net.eval()(x)
    if counters:
        _warm_counters(net.train(), device)
    del net, x
    free_memory()


def _warm_counters(net, device: str) -> None:
    """Count ``net`` as :func:`flops_per_step` counts a cell, for the imports and first-call set-up alone."""
    from archbench.catalog.source import ModuleSource

    try:
        from archbench.costs.summary import model_stats

        model_stats(ModuleSource(net, "warm-up", (3, 8, 8)), (3, 8, 8), 2, device, model=net)
    except Exception:  # noqa: BLE001 - a warm-up only: a counter that fails says so in each cell's own row
        pass


@contextlib.contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Inside the block, what is alive when it starts (torch, the counters' imports, the process's warm-up)
    sits in the collector's permanent generation: the ``gc.collect()`` a cell runs before timing and before
    reading peak memory then walks what the cells made, not the ~0.35 M objects of the imports (~0.35 s a
    collection, several a cell, on a 2-core machine). Garbage is collected first, so nothing dead is kept;
    the heap is unfrozen when the block ends. A heap someone already froze (a test session) is left to them."""
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------- a cell


def measure_cell(
    cell: Cell,
    options: MeasureOptions = MeasureOptions(),
    *,
    on_phase: Callable[[str], None] | None = None,
    caches: RunCaches | None = None,
) -> ResultRow:
    """Time one cell. Out of memory -> a ``status="oom"`` row; a model that fails -> a
    ``status="error"`` row whose message locates the failing module. KeyboardInterrupt propagates."""
    import torch

    from archbench.timing.memory import MemoryTracker
    from archbench.timing.timer import measure

    caches = caches if caches is not None else RunCaches()
    phase = on_phase or (lambda _: None)
    torch.set_num_threads(cell.threads)
    identity = cell_identity(cell, options)
    unsupported = unsupported_dtype(cell.device, cell.dtype) or unsupported_backend(cell.backend, cell.mode, cell.dtype,
                                                                                    cell.device)
    if unsupported:
        return ResultRow(**identity, status="unsupported", error=unsupported)
    if cell.search is not None and not cell.search.found:  # batch "max": not even batch 1 fits
        return ResultRow(**identity, status="oom", error=cell.search.failure())
    prepared = PreparedCell(cell)
    try:
        tracker = MemoryTracker(cell.device)
        step = prepared.build(caches, phase)
        probe = LoadProbe()  # the load over each tenth of a second of the sampling: under_load when it covered a tenth
        load = LoadWindows(probe, spare_cores=max(probe.cores - cell.threads, 0))
        with no_recompiles(cell.compiled):
            measurement = measure(step, cell.device, options, on_phase=_starting_window_at_sampling(tracker, phase),
                                  load=load)
        return dataclasses.replace(prepared.ok_row(identity, measurement, tracker.peak_bytes(), caches),
                                   under_load=load.under_load)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of a cell becomes its row, with the reason
        return prepared.failure_row(identity, exc)


def cell_identity(cell: Cell, options: MeasureOptions) -> dict[str, Any]:
    """The fields of ``cell``'s row that every outcome shares: its key, options, TF32 state and, for a batch
    ``max``, how the batch was found."""
    from archbench.sweep.maxbatch import search_fields

    return dict(model=cell.model, device=cell.device, mode=cell.mode, batch=cell.batch, input=cell.input_str,
                dtype=cell.dtype, channels_last=cell.channels_last, compiled=cell.compiled, threads=cell.threads,
                backend=cell.backend,
                precision=options.precision, max_time_s=options.budget_s, min_samples=options.min_samples,
                tf32=runs_as_tf32(cell.device, cell.dtype, tf32_settings()), **search_fields(cell.search))


@dataclass
class PreparedCell:
    """A cell's model, inputs and timed step, made by :meth:`build` (phases ``building``, ``counting
    FLOPs``, ``compiling`` — a non-eager backend's build — and ``checking numerics``), and its row once timed:
    what was built by the time a failure happened is what :meth:`failure_row` uses to locate it."""

    cell: Cell
    model: Any = None
    inputs: Any = None
    step: Callable[[], None] | None = None
    flops: float = math.nan
    flops_note: str = ""
    compile_s: float = math.nan
    output_error: Any = None  # a non-eager backend's infer output against eager's (archbench.timing.backends)
    probes: dict | None = None  # the run's probed input sizes (RunCaches.probes), for a failure's message

    def build(self, caches: RunCaches, phase: Callable[[str], None]) -> Callable[[], None]:
        import torch

        from archbench.costs.locate import probes_kept

        cell = self.cell
        self.probes = caches.probes
        phase("building")
        self.model = cell.source.build(cell.device)
        self.inputs = cell_inputs(cell)
        phase("counting FLOPs")
        with probes_kept(caches.probes, cell.source):
            self.flops, self.flops_note = flops_per_step(cell, self.model, caches)
        if cell.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        kind = backend_kind(cell.backend)
        self.model.train(cell.mode == "train")
        reference = forward_output(self.model, self.inputs, cell.device, cell.dtype) \
            if kind != "eager" and cell.mode == "infer" else None
        runner = compile_model(self.model, compile_mode(cell.backend)) if cell.compiled else None
        if kind in EXPORTED:
            phase("compiling")
            built = prepare(self.model, self.inputs, cell.backend, cell.threads, cell.device)
            runner, self.compile_s = built.runner, built.build_s
        self.step = make_step(self.model, self.inputs, cell.mode, cell.dtype, cell.device, runner=runner)
        if cell.compiled:
            phase("compiling")
            self.compile_s = run_compiling_call(self.step)  # before the budget and the memory window start
        if reference is not None:
            phase("checking numerics")
            self.output_error = output_error(reference, forward_output(runner, self.inputs, cell.device, cell.dtype))
        return self.step

    def ok_row(self, identity: dict[str, Any], measurement, peak_mem_bytes: float, caches: RunCaches) -> ResultRow:
        cell = self.cell
        peak, peak_note = math.nan, ""
        if math.isfinite(self.flops):
            peak, peak_note = caches.peaks.ceiling(cell.device, cell.dtype, cell.threads)  # measured before the cells
        from archbench.sweep.maxbatch import peak_note as search_peak_note

        errors = self.output_error
        numerics = numerics_note(errors.max_rel, cell.dtype) if errors is not None else ""
        note = "; ".join(n for n in (numerics, self.flops_note, peak_note, search_peak_note(cell.search, peak_mem_bytes))
                         if n)
        row = ok_row(identity, measurement, cell.batch, self.flops, peak, peak_mem_bytes, note)
        return dataclasses.replace(row, compile_s=_sig(self.compile_s),
                                   **({"max_abs_err": _sig(errors.max_abs, 3), "max_rel_err": _sig(errors.max_rel, 3)}
                                      if errors is not None else {}))

    def failure_row(self, identity: dict[str, Any], exc: BaseException) -> ResultRow:
        """Out of memory -> ``status="oom"``; anything else -> ``status="error"``, located in the model."""
        if is_out_of_memory(exc):
            return ResultRow(**identity, status="oom", error=oom_message(exc, self.cell))
        if isinstance(exc, ArchbenchError):
            return ResultRow(**identity, status="error", error=str(exc))
        message = located_message(exc, self.model, self.inputs, self.cell, self.probes)
        return ResultRow(**identity, status="error", error=message)


def cell_inputs(cell: Cell):
    """The cell's inputs: the source's own factory's (a tensor, a tuple of args or a dict of kwargs), or
    fixed random images."""
    factory = cell.source.inputs_factory()
    if factory is None:
        return make_images(cell.batch, cell.input, cell.device, cell.channels_last)
    return factory(cell.batch, cell.input, cell.dtype, cell.device)


def measure_device_peaks(cells: Sequence[Cell], peaks: DevicePeaks) -> None:
    """Each device/dtype's matmul peak, before the first cell and with no cell's model alive: measured
    inside a cell, its large matrices could run out of memory and discard a timed cell."""
    for device, dtype, threads in dict.fromkeys((c.device, c.dtype, c.threads) for c in cells):
        free_memory()
        peaks.ceiling(device, dtype, threads)


def _starting_window_at_sampling(tracker, phase: Callable[[str], None]) -> Callable[[str], None]:
    """The peak-memory window opens when sampling starts: warm-up (cuDNN autotuning's workspaces, the
    allocator's first growth) is not in the figure; weights, gradients and inputs stay counted, being
    allocated then."""

    def on_phase(name: str) -> None:
        if name == "sampling":
            tracker.start()
        phase(name)

    return on_phase


def ok_row(identity: dict, m, batch: int, flops: float, peak_tflops: float, peak_mem_bytes: float, note: str) -> ResultRow:
    """The row of a measured cell; ``peak_mem_mb`` is in MiB (2**20 bytes)."""
    median_s = m.median_ms / 1e3
    ci_low, ci_high = m.ci_ms
    achieved = flops / median_s / 1e12 if math.isfinite(flops) and median_s > 0 else math.nan
    return ResultRow(
        **identity,
        status="ok",
        note=note,
        n_samples=m.n_samples,
        median_ms=_sig(m.median_ms),
        iqr_ms=_sig(m.iqr_ms),
        ci_low_ms=_sig(ci_low),
        ci_high_ms=_sig(ci_high),
        min_ms=_sig(m.min_ms),
        samples_per_s=_sig(batch / median_s) if median_s > 0 else math.nan,
        flops_per_step=flops,
        achieved_tflops=_sig(achieved),
        peak_fraction=_sig(achieved / peak_tflops) if math.isfinite(achieved) and peak_tflops > 0 else math.nan,
        peak_mem_mb=_sig(peak_mem_bytes / 2**20),
        noisy=m.noisy,
        stop_reason=m.stop_reason,
        warmup_iters=len(m.warmup_ms),
        ci_coverage=_sig(m.ci_coverage),
        samples_ms=tuple(m.samples_ms),
    )


def flops_per_step(cell: Cell, model, caches: RunCaches) -> tuple[float, str]:
    """FLOPs of one step (forward for ``infer``, forward + backward for ``train``) from
    :func:`archbench.costs.summary.model_stats`, and a note saying why when they could not be counted (the row
    then has no achieved FLOP/s, with that reason; whether the cell itself runs is for its timing to say).

    Counted once per model and input in the run (not per batch, dtype or mode), at batch 1 and
    multiplied by the batch: the batch is an outer dimension of every op the counters have a formula for
    (convolutions, matrix products, attention), so the count is exactly linear in it, and counting at
    batch 8 would cost a whole extra training step of a large model. A model that cannot run a training
    step at batch 1 (BatchNorm over a single value) is counted at the cell's batch instead."""
    counts = caches.flop_counts
    key = (cell.source, cell.input)

    def counted_at(batch: int) -> tuple[float, float, str]:  # a failed count is not repeated for the next cell
        if (*key, "counted at", batch) not in counts:
            counts[(*key, "counted at", batch)] = _count_per_sample(cell, model, batch)
        return counts[(*key, "counted at", batch)]

    if key not in counts:
        counted = counted_at(1)
        if math.isnan(counted[0]) and cell.batch > 1:
            retry = counted_at(cell.batch)
            counted = retry if not math.isnan(retry[0]) else counted
        if math.isnan(counted[0]):
            counts[(*key, cell.batch)] = counted  # may work at another batch: not cached for the model
        else:
            counts[key] = counted
    forward, backward, note = counts.get(key) or counts[(*key, cell.batch)]
    per_sample = forward if cell.mode == "infer" else forward + backward
    return per_sample * cell.batch, note


def _count_per_sample(cell: Cell, model, batch: int) -> tuple[float, float, str]:
    try:
        from archbench.costs.summary import model_stats
    except ImportError as exc:
        return math.nan, math.nan, f"FLOPs not counted: {exc}"
    try:
        factory = cell.source.inputs_factory()
        inputs = factory(batch, cell.input, "fp32", cell.device) if factory is not None else None
        stats = model_stats(cell.source, cell.input, batch, cell.device, None, model=model, inputs=inputs)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a counter failure must not lose the timing; its reason is kept
        if is_out_of_memory(exc):
            raise
        reason = str(exc) if isinstance(exc, ArchbenchError) else f"{type(exc).__name__}: {exc}"
        return math.nan, math.nan, f"FLOPs not counted: {reason}"
    return float(stats.flops_forward) / batch, float(stats.flops_backward) / batch, ""


# ------------------------------------------------------------------------------------------- failures

def oom_message(exc: BaseException, cell: Cell) -> str:
    return (f"out of memory on {cell.device} at batch {cell.batch} ({cell.mode}, {cell.input_str}, {cell.dtype}): "
            f"{oom_reason(exc)}")


def located_message(exc: BaseException, model, inputs, cell: Cell, probes: dict | None = None) -> str:
    """The failing module, from :func:`archbench.costs.locate.forward_located` re-running the forward; the
    original error when the forward alone succeeds (the failure is in the loss or backward). ``probes``: the
    run's input sizes probed so far (:class:`RunCaches`), reused for the same failure of the cell's model."""
    plain = f"{type(exc).__name__}: {exc}"
    if model is None or inputs is None:
        return plain
    try:
        import torch

        from archbench.costs.locate import forward_located, probes_kept
    except ImportError:
        return plain
    kept = probes_kept(probes, cell.source) if probes is not None else contextlib.nullcontext()
    try:
        with kept, torch.no_grad(), autocast_for(cell.device, cell.dtype)():
            x = ModelInputs.of(inputs)
            forward_located(model, *x.args, **x.kwargs)
    except ModelRunError as located:
        return str(located)
    except Exception:  # noqa: BLE001 - the locator itself failed: the original error is the best we have
        return plain
    return f"{cell.mode} step failed after a successful forward: {plain}"

