"""``archbench profile``: where one model's step time goes, module by module, beside its FLOPs and bytes, on
the device's measured roofline.

One profile, in order:

1. the device's roofs: the matmul peak (:class:`~archbench.timing.peak.DevicePeaks`) and the STREAM
   bandwidth (:func:`~archbench.timing.bandwidth.measure_bandwidth`), before the model is built;
2. the counts of one step, per module (:func:`~archbench.costs.traffic.module_costs`: the summary's FLOP
   counter and bytes moved), and the summary's own total to check them against;
3. the unprofiled step, warmed up and timed by the existing adaptive timer (:func:`~archbench.timing.timer.measure`);
4. K rounds of one unprofiled step (the same timer's sampler) and one profiled step, each in its own
   ``torch.profiler`` session, module ranges recorded from forward hooks (:mod:`archbench.timing.attribution`).
   The unprofiled steps of the rounds are the reference of the overhead and the coverage, ratio by
   round: measured side by side, a loaded machine's drift falls on both. K adapts: at least
   :attr:`ProfileOptions.min_steps`, then
   until the 95% CI of the median step op time is within ``precision`` of it, ``max_steps`` or
   ``max_time_s``. 10 steps are the least that give every module an order-statistic 95% CI of its median
   that is not the sample range (ranks 2 and 9 of 10, coverage 97.9%).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.catalog.source import ModelSource
from archbench.errors import PATH_ECHO_LIMIT, ModelOutOfMemoryError, ModelRunError, UsageError, quoted
from archbench.results.profiles import LayerProfile, ModelProfile, Peaks, shares
from archbench.rows import MODES
from archbench.timing.loadsignal import LoadProbe, WindowLoad
from archbench.timing.options import MeasureOptions
from archbench.timing.stats import ci_within

DEFAULT_DEPTH = 3
TIMER_BUDGET_S = 4.0  # the existing timer's warm-up and samples before the rounds (the rounds are the reference)


@dataclass(frozen=True)
class ProfileOptions:
    """How many profiled steps: at least ``min_steps``; then until the 95% CI of the median step op time
    is within ``precision`` of it, ``max_steps`` are taken, or ``max_time_s`` of profiling is spent —
    :meth:`MeasureOptions.stop_reason` over the steps (:attr:`steps`), which also checks ``precision`` and
    ``max_time_s``."""

    min_steps: int = 10
    max_steps: int = 50
    precision: float = 0.03
    max_time_s: float = 30.0
    unprofiled: MeasureOptions = MeasureOptions(max_time_s=TIMER_BUDGET_S)

    def __post_init__(self) -> None:
        if not 1 <= int(self.min_steps) <= int(self.max_steps):
            raise UsageError(f"profiled steps: min_steps {self.min_steps} and max_steps {self.max_steps} must satisfy "
                             "1 <= min_steps <= max_steps.")
        self.steps  # noqa: B018 - the one check of precision and max_time_s

    @property
    def steps(self) -> MeasureOptions:
        """The stopping rule of the profiled steps: each step one sample."""
        return MeasureOptions(precision=self.precision, max_time_s=self.max_time_s, min_samples=int(self.min_steps),
                              max_samples=int(self.max_steps))


def profile_model(
    source: ModelSource,
    input: tuple[int, int, int] | None = None,
    batch: int = 1,
    *,
    mode: str = "infer",
    dtype: str = "fp32",
    device: str = "cpu",
    channels_last: bool = False,
    depth: int | None = DEFAULT_DEPTH,
    options: ProfileOptions = ProfileOptions(),
    threads: int | None = None,
    trace_path: str | Path | None = None,
    model: Any = None,
    inputs: Any = None,
    peaks: Peaks | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> ModelProfile:
    """Profile ``source``'s model (or ``model``, an ``nn.Module`` on ``device``) on ``batch`` x ``input``
    images (or ``inputs``) — see the module docstring. ``trace_path``: write the first profiled step's
    Chrome/Perfetto trace there. ``peaks``: roofs measured before (default: measured now).
    Raises :class:`ModelRunError` (:class:`ModelOutOfMemoryError`) when the
    model does not run."""
    import torch

    from archbench.env.environment import environment
    from archbench.timing.devices import require_device

    if mode not in MODES:
        raise UsageError(f"mode {quoted(mode)} is not one of {', '.join(MODES)}.")
    if depth is not None and depth < 1:
        raise UsageError(f"depth {depth} must be 1 or more (the model's children are depth 1), or None for every module.")
    require_device(device)
    phase = on_phase or (lambda _name: None)
    shape = tuple(input or source.input)
    previous_threads = torch.get_num_threads()
    if threads and not str(device).startswith("cuda"):
        torch.set_num_threads(int(threads))
    try:
        used_threads = 0 if str(device).startswith("cuda") else torch.get_num_threads()
        if peaks is None:
            phase("measuring the device's peaks")
            peaks = measure_peaks(device, dtype, used_threads)
        phase("building")
        module, x = _prepared(source, model, inputs, shape, batch, dtype, device, channels_last)
        try:
            return _profile(source, module, x, shape, batch, mode, dtype, device, channels_last, depth, options,
                            used_threads, peaks, trace_path, phase, environment([device], used_threads or None))
        except (ModelRunError, UsageError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - a model that fails (or runs out of memory) is a ModelRunError
            raise _run_error(source, error, shape, batch, mode, device) from error
    finally:
        torch.set_num_threads(previous_threads)


def measure_peaks(device: str, dtype: str, threads: int) -> Peaks:
    """The compute and bandwidth roofs of ``device``, measured now (the compute one: ``dtype``'s when it is
    a ceiling, else NaN and why)."""
    from archbench.timing.bandwidth import measure_bandwidth
    from archbench.timing.peak import DevicePeaks

    tflops, note = DevicePeaks().ceiling(device, dtype, threads or None)
    bandwidth = measure_bandwidth(device, threads or None)
    return Peaks(tflops, bandwidth.copy_gbps, bandwidth.triad_gbps, note)


# ------------------------------------------------------------------------------------------ steps


def _prepared(source: ModelSource, model: Any, inputs: Any, shape, batch: int, dtype: str, device: str,
              channels_last: bool):
    import torch

    from archbench.inputs import ModelInputs
    from archbench.timing.step import make_images

    module = model if model is not None else source.build(device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if inputs is None:
        factory = source.inputs_factory()
        inputs = (factory(batch, shape, dtype, device) if factory is not None
                  else make_images(batch, shape, device, channels_last))
    return module, ModelInputs.of(inputs)


def _counting_step(module, x, mode: str, dtype: str, device: str) -> Callable[[], Any]:
    """One forward (and, in train mode, the loss to differentiate) as the timed step runs it (autocast)."""
    from archbench.timing.step import autocast_for, loss_of

    autocast = autocast_for(device, dtype)
    labels: list = []

    def step():
        with autocast():
            output = x.call(module)
            return loss_of(output, labels) if mode == "train" else None

    return step


def _profile(source, module, x, shape, batch, mode, dtype, device, channels_last, depth, options: ProfileOptions,
             threads, peaks: Peaks, trace_path, phase, env) -> ModelProfile:
    from archbench.costs.summary import model_stats
    from archbench.costs.traffic import module_costs
    from archbench.parsing import format_input
    from archbench.timing.step import make_step
    from archbench.timing.timer import measure

    phase("counting FLOPs and bytes")
    costs = module_costs(module, _counting_step(module, x, mode, dtype, device), mode)
    stats = model_stats(source, shape, batch, device, model=module, inputs=x if x.image is None else None)
    summary_flops = stats.flops_forward + (stats.flops_backward if mode == "train" else 0)
    listed = _listed_modules(module, depth)
    step = make_step(module, x, mode, dtype, device)
    probe = LoadProbe()
    began = probe.now()
    phase("timing the unprofiled step")
    timer = measure(step, device, options.unprofiled)
    phase("profiling")
    profiled = _profiled_steps(step, module, listed, device, options, trace_path, phase)
    load = probe.since(began)
    layers = _layers(module, listed, costs, profiled)
    return ModelProfile(
        model=source.name, input=format_input(shape), batch=x.batch or batch, mode=mode, dtype=dtype, device=device,
        channels_last=channels_last, threads=threads, depth=depth, layers=layers,
        step_ms=tuple(s.total_ms for s in profiled.steps), profiled_wall_ms=tuple(profiled.wall_ms),
        unprofiled_ms=tuple(profiled.unprofiled_ms), timer_ms=timer.samples_ms,
        outside_ms=tuple(s.outside_ms for s in profiled.steps),
        summary_flops=summary_flops, peaks=peaks, timing=_timing_label(device), stop_reason=profiled.stop_reason,
        env=env, warnings=_warnings(profiled, timer, load, spare_cores=max((os.cpu_count() or 1) - threads, 0)),
    )


def _timing_label(device: str) -> str:
    if str(device).startswith("cuda"):
        return "CUDA kernel time (torch.profiler device events, per launching op)"
    return "CPU op self time (torch.profiler)"


def _listed_modules(model, depth: int | None) -> dict[int, str]:
    """``{id(module): dotted name}`` of the model and its modules down to ``depth`` (first name of a
    module registered under two)."""
    names: dict[int, str] = {}
    for name, module in model.named_modules():
        level = name.count(".") + 1 if name else 0
        if depth is None or level <= depth:
            names.setdefault(id(module), name)
    return names


@dataclass
class _Profiled:
    steps: list
    wall_ms: list
    unprofiled_ms: list
    stop_reason: str


def _profiled_steps(step, model, listed: dict[int, str], device: str, options: ProfileOptions, trace_path, phase,
                    clock: Callable[[], float] = time.perf_counter) -> _Profiled:
    """K profiled steps (see the module docstring), each attributed to the listed modules."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from archbench.timing.attribution import ModuleRanges, step_times
    from archbench.timing.timer import make_sampler

    cuda = str(device).startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sample = make_sampler(step, device)
    steps, wall, unprofiled, began = [], [], [], clock()
    rule = options.steps
    ranges = ModuleRanges(listed)
    with _quiet_profiler():
        while True:
            unprofiled.append(sample())
            with ranges, profile(activities=activities) as prof:
                wall.append(sample())
            if cuda:
                torch.cuda.synchronize(device)
            if trace_path is not None and not steps:
                prof.export_chrome_trace(str(trace_path))
            steps.append(step_times(prof.events(), device_time=cuda))
            phase(f"profiling: {len(steps)} step(s)")
            reason = rule.stop_reason(samples=len(steps), precise=lambda p: ci_within([s.total_ms for s in steps], p),
                                      spent_s=lambda: clock() - began, next_s=0.0)
            if reason:
                break
    reason = "max_steps" if reason == "max_samples" else reason
    return _Profiled(steps, wall, unprofiled, reason)


@contextlib.contextmanager
def _quiet_profiler():
    """Kineto logs every profiler start and stop (and a missing GPU) on stderr at its default level; the
    library never prints. Its level is read when the process first starts a profiler, so this quiets a
    process whose first profiler is ours, unless the user set ``KINETO_LOG_LEVEL`` themselves."""
    given = "KINETO_LOG_LEVEL" in os.environ
    if not given:
        os.environ["KINETO_LOG_LEVEL"] = "6"  # above USDT (5): nothing
    try:
        yield
    finally:
        if not given:
            os.environ.pop("KINETO_LOG_LEVEL", None)


# ------------------------------------------------------------------------------------------ layers


def _layers(model, listed: dict[int, str], costs, profiled: _Profiled) -> tuple[LayerProfile, ...]:
    """One row per listed module (the model first), times per step from its listed subtree."""
    names = list(dict.fromkeys(listed.values()))
    children = {name: [c for c in names if c and _parent(c, names) == name] for name in names}
    types = {name: type(m).__name__ for name, m in model.named_modules()}
    totals = [s.total_ms for s in profiled.steps]
    rows = []
    for name in names:
        subtree = [n for n in names if n == name or not name or n.startswith(name + ".")]
        forward = tuple(sum(s.forward_own_ms.get(n, 0.0) for n in subtree) for s in profiled.steps)
        backward = tuple(sum(s.backward_own_ms.get(n, 0.0) for n in subtree) for s in profiled.steps)
        own = tuple(s.forward_own_ms.get(name, 0.0) + s.backward_own_ms.get(name, 0.0) for s in profiled.steps)
        time_ms = tuple(f + b for f, b in zip(forward, backward))
        rows.append(LayerProfile(
            name=name, type=types.get(name, "?"), depth=name.count(".") + 1 if name else 0,
            leaf=not children[name], time_ms=time_ms, own_ms=own, forward_ms=forward, backward_ms=backward,
            share=shares(time_ms, totals), flops=costs.flops.get(name, 0), work_flops=costs.work_flops.get(name, 0),
            bytes=costs.bytes.get(name, 0)))
    return tuple(rows)


def _parent(name: str, names: list[str]) -> str:
    """The nearest listed ancestor of ``name`` (the model, ``""``, at the top)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in names:
            return candidate
    return ""


def _warnings(profiled: _Profiled, unprofiled, load: WindowLoad, spare_cores: int) -> tuple[str, ...]:
    notes = []
    if load.loaded(spare_cores):
        how = (f"some task waited for a CPU {load.stall:.0%} of the time" if math.isfinite(load.stall) else
               f"other processes kept {load.other_cores:.1f} core(s) busy")
        notes.append(f"the CPU was busy with other work while the step was timed and profiled ({how}): every time "
                     "here is probably inflated, the small modules' most; profile again on a quiet machine")
    if profiled.stop_reason != "precision":
        notes.append(f"profiling stopped after {len(profiled.steps)} steps ({profiled.stop_reason.replace('_', ' ')}) "
                     "before the 95% CI of the median step was within the precision asked for")
    if unprofiled.noisy:
        notes.append("the unprofiled step was noisy (IQR over 10% of the median): the machine may be loaded")
    return tuple(notes)


def _run_error(source: ModelSource, error: BaseException, shape, batch: int, mode: str, device: str) -> ModelRunError:
    from archbench.errors import one_line
    from archbench.oom import is_out_of_memory
    from archbench.parsing import format_input

    where = f"model {quoted(source.name, PATH_ECHO_LIMIT)} at input {format_input(shape)}, batch {batch}, {mode} mode, on {device}"
    if is_out_of_memory(error):
        return ModelOutOfMemoryError(f"{where} ran out of memory while being profiled: {one_line(error)}",
                                     remedies=("smaller",))
    return ModelRunError(f"{where} failed while being profiled: {one_line(error)}")


# ------------------------------------------------------------------------------- store and reports


def record_profile(store, profile: ModelProfile, command: str, out_dir: str | Path | None = None) -> int:
    """Record ``profile`` in the results store as a run of its own (no cells): the run, its compute and
    bandwidth peaks, and the profile. Returns the run id."""
    from archbench.env.git import git_commit

    run_id = store.begin_run(command, title=f"profile of {profile.label()}", env=dict(profile.env),
                             git_commit=git_commit("."), out_path=out_dir, planned_cells=0)
    store.record_peak(run_id, profile.device, profile.dtype, profile.threads, profile.peaks.tflops)
    store.record_bandwidth(run_id, profile.device, profile.threads, profile.peaks.copy_gbps, profile.peaks.triad_gbps)
    store.add_profile(run_id, profile.model, profile.to_dict())
    store.finish_run(run_id)
    return run_id


def stored_profile(store, run_id: int) -> ModelProfile | None:
    """The profile of run ``run_id`` (None when the run is no profile run)."""
    from archbench.errors import StoreError

    data = store.profile_json(run_id)
    if data is None:
        return None
    try:
        return ModelProfile.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"run {run_id} in {quoted(store.path, PATH_ECHO_LIMIT)} holds a profile archbench cannot read ({exc}).") from exc


def load_profile(ref: str, db_path: str | Path | None = None) -> tuple[ModelProfile, str] | None:
    """``(profile, label)`` of ``ref``: a profile run of the store (``12``, ``latest``, ``latest~N``), or a
    ``profile.json`` / a folder holding one; None when ``ref`` is a run or file of another kind."""
    import json

    from archbench.report.profile_view import JSON_NAME
    from archbench.results.store import Store, default_db_path, is_run_ref

    path = Path(ref)
    if path.is_dir():
        path = path / JSON_NAME
    if path.is_file() and path.name.endswith(".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("archbench.profile/"):
            return None
        try:
            return ModelProfile.from_dict(data), str(path)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{quoted(path, PATH_ECHO_LIMIT)} is a profile archbench cannot read ({exc}).") from exc
    if path.exists() or not is_run_ref(ref):
        return None
    db = default_db_path() if db_path is None else Path(db_path)
    if not db.is_file():
        return None
    with Store.open(db, readonly=True) as store:
        run_id = store.resolve(ref)
        found = stored_profile(store, run_id)
    return (found, f"run {run_id}") if found is not None else None
