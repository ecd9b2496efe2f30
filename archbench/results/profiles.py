"""The typed result of ``archbench profile`` / :func:`archbench.profile` (pure Python, no torch): per module,
time over K profiled steps (median, 95% CI), its share of the step, FLOPs, bytes moved, arithmetic
intensity, achieved FLOP/s and GB/s and the roof it sits under; for the step, the unprofiled median, the
profiling overhead and the coverage. JSON form: :meth:`ModelProfile.to_dict` (schema :data:`SCHEMA`).

Definitions (also in every report):

* ``time`` of a module: the summed self time of the ops it ran (its subtree's, forward and, in train mode,
  backward), one value per profiled step; median and the order-statistic 95% CI of the median
  (:func:`archbench.timing.stats.median_ci`). ``own`` time: the ops run in its own forward, not in a
  listed child.
* ``share``: the median over steps of module time / the step's total op time.
* ``flops``: 2 x MACs (the summary's convention; forward + backward in train mode). ``work_flops``: every
  counted operation (2 per MAC of matrix work, normalisation and pooling, 1 per elementwise operation),
  the numerator of ``intensity`` = work_flops / bytes, and of achieved FLOP/s.
* ``bytes``: tensors read + written per op at dispatch, no cache reuse (:mod:`archbench.costs.traffic`).
* ``bound``: ``memory`` left of the ridge point (intensity < peak FLOP/s / peak bytes/s), else ``compute``.
* rounds: each profiled step follows one unprofiled step (the timer's sampler), so a loaded machine's drift
  falls on both; ``overhead``: the median over rounds of profiled step (wall) / unprofiled step − 1;
  ``coverage``: the median over rounds of the top-level modules' summed time / the unprofiled step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from archbench.files import jsonable
from archbench.timing.stats import median, median_ci

SCHEMA = "archbench.profile/1"


@dataclass(frozen=True)
class LayerProfile:
    """One module (counts and times for its whole subtree). ``time_ms``: one value per profiled step."""

    name: str  # dotted path; "" is the model itself
    type: str
    depth: int  # 1 for the model's children, 0 for the model
    leaf: bool  # no listed child: its own time is its time
    time_ms: tuple[float, ...]
    own_ms: tuple[float, ...]
    forward_ms: tuple[float, ...]
    backward_ms: tuple[float, ...]
    share: tuple[float, ...]
    flops: int
    work_flops: int
    bytes: int
    calls: int = 1

    @property
    def median_ms(self) -> float:
        return median(self.time_ms)

    @property
    def ci_ms(self) -> tuple[float, float]:
        low, high, _ = median_ci(self.time_ms)
        return low, high

    @property
    def own_median_ms(self) -> float:
        return median(self.own_ms)

    @property
    def forward_median_ms(self) -> float:
        return median(self.forward_ms)

    @property
    def backward_median_ms(self) -> float:
        return median(self.backward_ms)

    @property
    def share_median(self) -> float:
        return median(self.share)

    @property
    def intensity(self) -> float:
        """work FLOPs per byte moved (NaN without bytes)."""
        return self.work_flops / self.bytes if self.bytes else math.nan

    @property
    def achieved_tflops(self) -> float:
        t = self.median_ms
        return self.work_flops / (t / 1e3) / 1e12 if t > 0 else math.nan

    @property
    def achieved_gbps(self) -> float:
        t = self.median_ms
        return self.bytes / (t / 1e3) / 1e9 if t > 0 else math.nan


@dataclass(frozen=True)
class Peaks:
    """The measured roofs: matmul TFLOP/s (the compute peak of :mod:`archbench.timing.peak`) and STREAM
    copy/triad GB/s (:mod:`archbench.timing.bandwidth`); ``gbps`` is the better of the two."""

    tflops: float
    copy_gbps: float
    triad_gbps: float
    note: str = ""  # why a roof is missing (an emulated low-precision peak)

    @property
    def gbps(self) -> float:
        rates = [r for r in (self.copy_gbps, self.triad_gbps) if math.isfinite(r)]
        return max(rates) if rates else math.nan

    @property
    def ridge(self) -> float:
        """FLOPs per byte where the bandwidth roof meets the compute roof."""
        return self.tflops * 1e12 / (self.gbps * 1e9) if self.gbps > 0 and math.isfinite(self.tflops) else math.nan

    def bound(self, intensity: float) -> str:
        if not (math.isfinite(intensity) and math.isfinite(self.ridge)):
            return "—"
        return "memory" if intensity < self.ridge else "compute"


@dataclass(frozen=True)
class ModelProfile:
    """Everything ``archbench profile`` reports (see the module docstring)."""

    model: str
    input: str
    batch: int
    mode: str
    dtype: str
    device: str
    channels_last: bool
    threads: int
    depth: int | None
    layers: tuple[LayerProfile, ...]
    step_ms: tuple[float, ...]  # per profiled step: total op time (the profiler's view of the step)
    profiled_wall_ms: tuple[float, ...]  # per profiled step: its wall (CPU) or CUDA-event (GPU) time
    unprofiled_ms: tuple[float, ...]  # per round: the same step unprofiled, timed just before the profiled one
    outside_ms: tuple[float, ...]  # per step: ops outside every module (loss, gradient accumulation)
    summary_flops: int  # the summary's FLOPs of one step (forward, + backward in train mode)
    peaks: Peaks
    timing: str  # what was timed: CPU op self time, or CUDA kernel time
    stop_reason: str  # why profiling stopped after len(step_ms) steps
    env: Mapping[str, Any] = field(default_factory=dict, hash=False)
    warnings: tuple[str, ...] = ()
    timer_ms: tuple[float, ...] = ()  # the existing adaptive timer's samples (warm-up run), before the rounds

    # ----------------------------------------------------------------------------------- the step

    @property
    def steps(self) -> int:
        return len(self.step_ms)

    @property
    def unprofiled_median_ms(self) -> float:
        return median(self.unprofiled_ms)

    @property
    def profiled_median_ms(self) -> float:
        return median(self.profiled_wall_ms)

    @property
    def overhead(self) -> float:
        """The median over rounds of profiled step / unprofiled step − 1."""
        return _paired_median(self.profiled_wall_ms, self.unprofiled_ms) - 1

    @property
    def top_level(self) -> tuple[LayerProfile, ...]:
        return tuple(layer for layer in self.layers if layer.depth == 1)

    @property
    def top_level_ms(self) -> tuple[float, ...]:
        """Per step: the top-level modules' summed time."""
        tops = self.top_level
        return tuple(sum(layer.time_ms[i] for layer in tops) for i in range(self.steps))

    @property
    def coverage(self) -> float:
        """The median over rounds of the top-level modules' summed time / the round's unprofiled step."""
        return _paired_median(self.top_level_ms, self.unprofiled_ms)

    @property
    def timer_median_ms(self) -> float:
        return median(self.timer_ms) if self.timer_ms else math.nan

    @property
    def flops(self) -> int:
        """The per-module FLOPs added up: the model's own row (its subtree, every module)."""
        root = self.root
        return root.flops if root is not None else sum(layer.flops for layer in self.top_level)

    @property
    def flops_match(self) -> bool:
        return self.flops == self.summary_flops

    @property
    def root(self) -> LayerProfile | None:
        return next((layer for layer in self.layers if layer.depth == 0), None)

    def leaves(self) -> list[LayerProfile]:
        """The listed modules without a listed child (their times do not overlap), slowest first."""
        return sorted((layer for layer in self.layers if layer.leaf and layer.depth > 0),
                      key=lambda layer: -layer.median_ms)

    def ranked(self) -> list[LayerProfile]:
        """Every listed module (the model excluded), slowest first."""
        return sorted((layer for layer in self.layers if layer.depth > 0), key=lambda layer: -layer.median_ms)

    def layer(self, name: str) -> LayerProfile:
        return next(layer for layer in self.layers if layer.name == name)

    def label(self) -> str:
        extras = ["channels-last"] if self.channels_last else []
        return " ".join([self.model, self.mode, self.device, self.dtype, f"b{self.batch}", self.input, *extras])

    # ------------------------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("layers", "peaks")}
        data["layers"] = [{f.name: getattr(layer, f.name) for f in fields(layer)} for layer in self.layers]
        data["peaks"] = {f.name: getattr(self.peaks, f.name) for f in fields(self.peaks)}
        data["env"] = dict(self.env)
        return jsonable({"schema": SCHEMA, **data, "derived": self._derived()})

    def _derived(self) -> dict[str, Any]:
        """Figures computed from the stored ones, for readers of the JSON (ignored when read back)."""
        return {
            "unprofiled_median_ms": self.unprofiled_median_ms, "profiled_median_ms": self.profiled_median_ms,
            "overhead": self.overhead, "coverage": self.coverage, "flops": self.flops,
            "flops_match": self.flops_match, "ridge_flops_per_byte": self.peaks.ridge, "peak_gbps": self.peaks.gbps,
            "layers": {layer.name: {"median_ms": layer.median_ms, "ci_ms": list(layer.ci_ms),
                                    "share": layer.share_median, "intensity": layer.intensity,
                                    "achieved_tflops": layer.achieved_tflops, "achieved_gbps": layer.achieved_gbps,
                                    "bound": self.peaks.bound(layer.intensity)} for layer in self.layers},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelProfile:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not an archbench profile (schema {data.get('schema')!r}, expected {SCHEMA!r})")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["layers"] = tuple(LayerProfile(**{f.name: _tupled(layer[f.name]) for f in fields(LayerProfile)
                                                 if f.name in layer}) for layer in data["layers"])
        values["layers"] = tuple(_with_nans(layer) for layer in values["layers"])
        values["peaks"] = Peaks(**{k: _number(v) if k != "note" else v for k, v in data["peaks"].items()})
        for name in ("step_ms", "profiled_wall_ms", "unprofiled_ms", "outside_ms", "timer_ms"):
            values[name] = tuple(map(_number, values.get(name, ())))
        values["warnings"] = tuple(values.get("warnings", ()))
        return cls(**values)


def _paired_median(values: Sequence[float], references: Sequence[float]) -> float:
    """The median of per-round ratios ``value / reference`` (NaN without a round)."""
    ratios = [v / r for v, r in zip(values, references) if r > 0]
    return median(ratios) if ratios else math.nan


def _with_nans(layer: LayerProfile) -> LayerProfile:
    from dataclasses import replace

    return replace(layer, **{name: tuple(map(_number, getattr(layer, name)))
                             for name in ("time_ms", "own_ms", "forward_ms", "backward_ms", "share")})


def _tupled(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def shares(times: Sequence[float], totals: Sequence[float]) -> tuple[float, ...]:
    """Per step: ``time / total`` (NaN for a step without time)."""
    return tuple(t / total if total > 0 else math.nan for t, total in zip(times, totals))
