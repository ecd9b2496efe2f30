"""The Python API: what an architecture costs, from a model a user holds — an ``nn.Module``, a class or
factory returning one, a :class:`~archbench.catalog.source.ModelSource`, or a model name the CLI knows.

Each function is the library behind a CLI command (``summarize`` ↔ ``summary``, ``bench`` ↔ ``bench``,
``compare`` ↔ ``compare``), with the same defaults (:class:`~archbench.timing.options.MeasureOptions`) and the
same typed results. The caller's model is never changed: summaries restore modes, buffers, gradients,
hooks and RNG; timing runs on a copy.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench import arguments as check
from archbench.api import arguments as models_check
from archbench.catalog.source import ModelSource, as_source
from archbench.errors import quoted
from archbench.study import (
    BENCH_BATCHES,
    DEFAULT_BATCHES,
    DEFAULT_DEVICES,
    DEFAULT_DTYPES,
    DEFAULT_INTERLEAVE,
    DEFAULT_MODES,
)
from archbench.timing.options import MeasureOptions

if TYPE_CHECKING:
    from archbench.costs.summary import ModelSummary
    from archbench.memory_estimate import MemoryEstimate
    from archbench.results.profiles import ModelProfile
    from archbench.rows import ModelStats, ResultRow
    from archbench.runs.compare import CompareResult
    from archbench.timing.stats import Measurement

Model = Any  # nn.Module | type | Callable[..., nn.Module] | ModelSource | str


def summarize(
    model: Model,
    input_size: Sequence[int] | None = None,
    *,
    batch: int = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    depth: int | None = 3,
    input_data: Any = None,
    name: str | None = None,
) -> ModelSummary:
    """Layer table, parameters, MACs/FLOPs forward and backward, activation memory, counter coverage and
    fvcore's cross-check of ``model`` on ``batch`` x ``input_size`` (``C, H, W``; default: a named
    model's own input, else 3x224x224) — or on ``input_data`` (a tensor, a tuple of positional args or a
    dict of keyword args) for a forward that takes more than one image tensor.

    ``depth`` limits the layer table (``0``: none; ``None``: every module). The result prints as a rich
    table, and has ``.to_dict()`` (the ``archbench summary --json`` schema) and ``.to_markdown()``."""
    model, input_size, batch, device, dtype, name = _counting_arguments(model, input_size, batch, device, dtype, name)
    depth = check.optional_integer(depth, "depth", minimum=0, what="0 or more (0: no layer table), or None (all)")
    from archbench.costs.summary import summarize as summarize_source

    source = _source(model, name, input_size)
    module = _module_to_count(model, source, device, dtype)
    return summarize_source(source, input_size, batch, device, depth=depth, model=module, inputs=input_data)


def count(model: Model, inputs: Any = None, *, input_size: Sequence[int] | None = None, batch: int = 1,
          device: str = "cpu", dtype: str = "fp32", name: str | None = None) -> ModelStats:
    """Counts only: parameters, MACs, FLOPs forward and backward, activation memory of ``model`` on
    ``inputs`` (a tensor, tuple or dict), or on ``batch`` x ``input_size`` images — the numbers of
    :func:`summarize`, without its layer table and fvcore cross-check (about half the time)."""
    model, input_size, batch, device, dtype, name = _counting_arguments(model, input_size, batch, device, dtype, name)
    from archbench.costs.summary import summarize as summarize_source

    source = _source(model, name, input_size)
    module = _module_to_count(model, source, device, dtype)
    return summarize_source(source, input_size, batch, device, depth=0, model=module, inputs=inputs,
                            cross_check=False).stats


def estimate_memory(model: Model, input_size: Sequence[int] | None = None, *, batch: int = 1, optimizer: str = "none",
                    mode: str = "train", dtype: str = "fp32", device: str = "cpu", name: str | None = None,
                    make_inputs: Callable[..., Any] | None = None) -> MemoryEstimate:
    """The memory one step of ``model`` needs at ``batch``, by part: parameters, gradients, optimizer state
    (``optimizer``: none, sgd, sgd-momentum, adam, adamw), inputs, activations saved for backward and transient
    workspace (see :mod:`archbench.memory_estimate`). ``dtype`` bf16/fp16 runs under autocast (AMP, fp32
    master weights). The result's ``.at(batch)`` and ``.largest_batch(budget_bytes)`` answer for other batches
    and budgets; the caller's model is never changed (a copy runs)."""
    from archbench.memory_estimate import estimate_memory as estimate

    source = _source(model, name, input_size, make_inputs)
    module = model if _is_module(model) else None
    return estimate(source, tuple(input_size) if input_size else None, batch=batch, mode=mode, dtype=dtype,
                    optimizer=optimizer, device=device, model=module)


def _is_module(model: Model) -> bool:
    from torch import nn

    return isinstance(model, nn.Module)


def measure(fn: Callable[[], object], device: str = "cpu", options: MeasureOptions = MeasureOptions(),
            *, sampler: Callable[[], float] | None = None, clock: Callable[[], float] | None = None) -> Measurement:
    """Time ``fn`` as archbench times a cell (like ``torch.utils.benchmark.Timer.adaptive_autorange``):
    a warm-up, then one sample per call until the 95% CI of the median is within ``options.precision``,
    ``options.max_time_s`` is spent or ``options.max_samples`` are taken. Raw samples are kept.
    ``sampler`` (one call's milliseconds) and ``clock`` (seconds) replace the real timer, e.g. in tests."""
    import time

    from archbench.timing.timer import measure as measure_step

    check.function(fn, "fn", "a callable taking no arguments (one timed call)")
    device = check.device(device)
    check.instance(options, "options", MeasureOptions, "a MeasureOptions")
    check.optional_function(sampler, "sampler", "a callable returning one call's milliseconds, or None")
    check.optional_function(clock, "clock", "a callable returning seconds, or None")
    return measure_step(fn, device, options, sampler=sampler, clock=clock or time.perf_counter)


def bench(
    model: Model | Mapping[str, Model],
    input_size: Sequence[int] | None = None,
    *,
    batches: Iterable[int] = BENCH_BATCHES,
    modes: Iterable[str] = DEFAULT_MODES,
    dtypes: Iterable[str] = DEFAULT_DTYPES,
    device: str = DEFAULT_DEVICES[0],
    options: MeasureOptions = MeasureOptions(),
    threads: int | None = None,
    channels_last: bool = False,
    compiled: bool = False,
    make_inputs: Callable[..., Any] | None = None,
    out_csv: str | Path | None = None,
    listener: Any = None,
    interleave: bool = DEFAULT_INTERLEAVE,
) -> list[ResultRow]:
    """Time ``model`` (or each model of a ``{name: model}`` mapping) over batches x modes x dtypes and
    return one :class:`~archbench.rows.ResultRow` per cell — the rows ``archbench bench`` writes, with
    FLOP rate, peak memory and raw samples. Failing cells are rows too (``status`` oom/error).

    ``make_inputs(batch, input_shape, dtype, device)`` builds the inputs of a model whose forward takes
    more than an image batch. ``out_csv`` keeps the rows as a CSV as they are measured (default: none).
    ``interleave``: several models are timed in alternating rounds at each cell, with paired time ratios
    against the first (as ``archbench bench`` does; ``False``: each model's cells in turn). The defaults are
    the CLI's (:mod:`archbench.study.model`)."""
    models = models_check.named_models(model, "model", allow_single=True)
    input_size = check.input_shape(input_size)
    batches, modes, dtypes = check.integers(batches, "batches", "(1, 8)"), check.modes(modes), check.dtypes(dtypes)
    device = check.device(device)
    check.instance(options, "options", MeasureOptions, "a MeasureOptions")
    threads = check.optional_integer(threads, "threads", what="a positive number of threads, or None (torch's)")
    channels_last, compiled = check.flag(channels_last, "channels_last"), check.flag(compiled, "compiled")
    interleave = check.flag(interleave, "interleave")
    check.optional_function(make_inputs, "make_inputs", "a function make_inputs(batch, input_shape, dtype, device), or None")
    out_csv = check.location(out_csv, "out_csv")
    from archbench.sweep.cells import plan_cells
    from archbench.sweep.interleave import Interleaving
    from archbench.sweep.run import run_sweep

    sources = [_source(m, n, input_size, make_inputs) for n, m in models.items()]
    cells = plan_cells(sources, [device], list(batches), [input_size] if input_size else None, list(modes),
                       list(dtypes), channels_last, compiled, threads)
    with tempfile.TemporaryDirectory(prefix="archbench-") as scratch:
        path = out_csv if out_csv is not None else Path(scratch) / "results.csv"
        result = run_sweep(cells, path, resume=False, options=options, listener=listener,
                           interleave=Interleaving(sources[0].name) if interleave else None)
    if result.interrupted:
        raise KeyboardInterrupt
    return list(result.rows)


def compare(
    models: Mapping[str, Model] | Sequence[Model],
    *,
    inputs: Iterable[Sequence[int]] | None = None,
    batches: Iterable[int] = DEFAULT_BATCHES,
    modes: Iterable[str] = DEFAULT_MODES,
    dtypes: Iterable[str] = DEFAULT_DTYPES,
    devices: Iterable[str] = DEFAULT_DEVICES,
    options: MeasureOptions = MeasureOptions(),
    out_dir: str | Path | None = None,
    title: str = "",
    reference: str | None = None,
    force: bool = False,
    interleave: bool = DEFAULT_INTERLEAVE,
) -> CompareResult:
    """Compare models as ``archbench compare`` does and write the same report (``report.md``,
    ``results.csv``/``.json``, plots) to ``out_dir`` (default ``reports/<a>-vs-<b>/``). ``models`` maps
    report names to models (modules, factories or names: ``{"mine": MyNet(), "resnext-50": "resnext-50"}``);
    a sequence uses each name or class name. The result's ``.data`` holds the rows and counts. ``options``
    (all of them, warm-up and ``max_samples`` included) say how each cell is measured; ``interleave``: the
    models of each grid point are timed in alternating rounds (``False``: model by model)."""
    named = _compared_models(models)
    shapes = check.input_shapes(inputs)
    batches, modes, dtypes = check.integers(batches, "batches", "(1, 8)"), check.modes(modes), check.dtypes(dtypes)
    devices = check.devices(devices)
    check.instance(options, "options", MeasureOptions, "a MeasureOptions")
    out_dir = check.location(out_dir, "out_dir")
    title, force = check.text(title, "title"), check.flag(force, "force")
    interleave = check.flag(interleave, "interleave")
    reference = check.optional_text(reference, "reference")
    if reference is not None and reference not in named:
        raise check.ArgumentError(f"argument reference: {quoted(reference)} is not one of the models compared "
                                  f"({', '.join(map(repr, named))}).")
    from archbench.runs.compare import run_compare
    from archbench.study import StudyOptions, adhoc_study

    sources = {n: _source(m, n, shapes[0] if shapes and not isinstance(m, str) else None) for n, m in named.items()}
    study = adhoc_study(list(named), devices=list(devices), inputs=shapes, batches=list(batches), modes=list(modes),
                        dtypes=list(dtypes), reference=reference, title=title,
                        options=StudyOptions(options, interleave=interleave))
    command = _compare_call(named, inputs=shapes, batches=batches, modes=modes, dtypes=dtypes, devices=devices,
                            options=options, title=title, reference=reference,
                            interleave=None if interleave == DEFAULT_INTERLEAVE else interleave)
    return run_compare(study, out_dir, command=command, force=force, sources=sources)


def _compare_call(named: Mapping[str, Model], *, options: MeasureOptions, **grid: Any) -> str:
    """The Python that reruns a :func:`compare` (what its report prints under "Reproduce with"), on one line
    (it also goes into a LaTeX comment): every argument spelled out, options that differ from the defaults; a
    class or factory importable by its module is passed by reference (``"mypkg.models:MyNet"``), which builds
    the same model; a model object held by the caller is named by its class, to pass again."""
    models = ", ".join(f"{name!r}: {_model_code(model)}" for name, model in named.items())
    defaults = MeasureOptions()
    changed = ", ".join(f"{f.name}={getattr(options, f.name)!r}" for f in dataclasses.fields(options)
                        if getattr(options, f.name) != getattr(defaults, f.name))
    values = {name: [tuple(v) if isinstance(v, (list, tuple)) else v for v in value]
              if isinstance(value, (list, tuple)) else value
              for name, value in grid.items() if value not in (None, "")}  # sequences as lists, shapes as tuples
    arguments = "".join(f", {name}={value!r}" for name, value in values.items())
    options_code = f", options=archbench.MeasureOptions({changed})" if changed else ""
    return f"import archbench; archbench.compare({{{models}}}{arguments}{options_code})".replace(
        "WarmupPolicy(", "archbench.WarmupPolicy(")


def _model_code(model: Model) -> str:
    if isinstance(model, str):
        return repr(model)
    target = model if callable(model) and not isinstance(model, _module_class()) else type(model)
    module, name = getattr(target, "__module__", ""), getattr(target, "__qualname__", "")
    importable = module and module != "__main__" and "<" not in name and not module.startswith("archbench_file_")
    if importable and target is model:
        return repr(f"{module}:{name}")
    return f"<your {name or type(model).__name__} object>"


def _module_class() -> type:
    from torch import nn

    return nn.Module


def profile(
    model: Model,
    input_size: Sequence[int] | None = None,
    *,
    batch: int = 1,
    mode: str = "infer",
    dtype: str = "fp32",
    device: str = "cpu",
    channels_last: bool = False,
    depth: int | None = 3,
    min_steps: int = 10,
    max_steps: int = 50,
    precision: float = 0.03,
    max_time_s: float = 30.0,
    threads: int | None = None,
    input_data: Any = None,
    trace: str | Path | None = None,
    name: str | None = None,
) -> ModelProfile:
    """Where ``model``'s step time goes (``archbench profile``): each module's time over repeated
    torch.profiler steps (median, 95% CI; forward and, with ``mode="train"``, backward), its share of the
    step, FLOPs (the summary's counts), bytes moved, FLOPs/byte, achieved GFLOP/s and GB/s and its roof
    (memory or compute, against this device's measured matmul and STREAM peaks); the profiling overhead and
    the coverage. ``depth`` limits the modules timed (``None``: all). ``trace``: a path for the first
    profiled step's Chrome trace. Timing runs on a copy of an ``nn.Module``; the caller's is not changed."""
    from archbench.runs.profile import ProfileOptions, profile_model

    source = _source(model, name, input_size)  # an nn.Module's source builds a copy of it
    return profile_model(source, tuple(input_size) if input_size else None, batch, mode=mode, dtype=dtype,
                         device=device, channels_last=channels_last, depth=depth, threads=threads,
                         options=ProfileOptions(min_steps, max_steps, precision, max_time_s), trace_path=trace,
                         inputs=input_data)


# ------------------------------------------------------------------------------------------ helpers


def _source(model: Model, name: str | None, input_size: Sequence[int] | None,
            make_inputs: Callable[..., Any] | None = None) -> ModelSource:
    source = as_source(model, name=name, input=tuple(input_size) if input_size else None, make_inputs=make_inputs)
    if name and isinstance(model, str) and source.name != name:
        import dataclasses

        source = dataclasses.replace(source, name=name)  # a spec reported under the caller's name
    return source


def _counting_arguments(model, input_size, batch, device, dtype, name):
    """The arguments :func:`summarize` and :func:`count` share, checked (see :mod:`archbench.arguments`)."""
    return (models_check.model(model), check.input_shape(input_size), check.integer(batch, "batch", what="a positive batch size"),
            check.device(device), check.dtype(dtype), check.optional_text(name, "name"))


def _compared_models(models: Any) -> dict[str, Model]:
    """``{report name: model}``: a mapping as given; a sequence named by each name or class name (two of one
    name are an error: their rows would merge)."""
    if isinstance(models, Mapping):
        return dict(models_check.named_models(models, "models", allow_single=False))
    named: dict[str, Model] = {}
    for model in models_check.named_models(models, "models", allow_single=False).values():
        label = _name_of(model)
        if label in named:
            raise check.ArgumentError(f"argument models: two models are named {quoted(label)}: pass a mapping "
                                      "{name: model} to name them apart.")
        named[label] = model
    return named


def _name_of(model: Model) -> str:
    if isinstance(model, str):
        return model
    return as_source(model).name


def _module_to_count(model: Model, source: ModelSource, device: str, dtype: str):
    """The module the summary counts: the caller's own instance when it already lives on ``device`` in
    ``dtype`` (the summary restores its state), else a fresh build / copy moved there."""
    import torch
    from torch import nn

    from archbench.timing.peak import torch_dtype

    wanted = torch_dtype(dtype)
    if isinstance(model, nn.Module):
        tensors = [*model.parameters(), *model.buffers()]
        on_device = all(t.device == torch.device(device) for t in tensors)
        in_dtype = all(t.dtype == wanted for t in tensors if t.is_floating_point())
        if on_device and in_dtype:
            return model
    from archbench.resources import meta_build_within_bounds

    meta_build_within_bounds(source, [device])  # a model too large for the device is refused before it is built
    module = source.build(device)
    return module.to(wanted) if dtype != "fp32" else module
