"""``archbench diff`` of two profiles: module by module, under the same rules as a cell diff
(:mod:`archbench.results.significance`; no torch import).

For each module listed in both profiles, on its per-step times: the Hodges–Lehmann ratio NEW / BASE with
Moses' CI and the Mann–Whitney U p-value, Holm-adjusted across the modules and the whole step (the
unprofiled step samples, a test of their own), then asv's verdict (slower / faster only when significant
and the whole CI lies beyond ±min_effect). FLOPs and bytes are compared exactly. Environment differences
make the profiles "not comparable", as for runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from archbench.env.differences import EnvDifference, env_differences
from archbench.errors import PATH_ECHO_LIMIT, UsageError, quoted
from archbench.results.profiles import ModelProfile
from archbench.results.significance import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_EFFECT,
    Verdict,
    holm,
    mann_whitney_u,
    ratio_ci,
    verdict,
)
from archbench.timing.stats import CONFIDENCE, median

STEP = "(whole step, unprofiled)"


@dataclass(frozen=True)
class LayerDiff:
    """One module (or the whole step) in both profiles: NEW / BASE time and its CI, p-values, verdict."""

    name: str
    base_median_ms: float
    new_median_ms: float
    ratio: float
    low: float
    high: float
    p: float
    p_holm: float
    verdict: Verdict
    base_flops: int
    new_flops: int
    base_bytes: int
    new_bytes: int


@dataclass(frozen=True)
class ProfileDiff:
    base_label: str
    new_label: str
    env_differences: tuple[EnvDifference, ...]
    allow_env_change: bool
    layers: tuple[LayerDiff, ...]  # the whole step first
    only_in_base: tuple[str, ...]
    only_in_new: tuple[str, ...]
    notes: tuple[str, ...]
    min_effect: float
    alpha: float

    @property
    def comparable(self) -> bool:
        return self.allow_env_change or not self.env_differences

    @property
    def slower(self) -> tuple[LayerDiff, ...]:
        return tuple(layer for layer in self.layers if layer.verdict == "slower")

    @property
    def outcome(self) -> str:
        if not self.comparable:
            return "not comparable"
        return "regressed" if self.slower else "no regression"


def diff_profiles(base: ModelProfile, new: ModelProfile, base_label: str, new_label: str, *,
                  min_effect: float = DEFAULT_MIN_EFFECT, alpha: float = DEFAULT_ALPHA,
                  confidence: float = CONFIDENCE, allow_env_change: bool = False) -> ProfileDiff:
    """Compare ``new`` against ``base`` module by module (see the module docstring). Raises
    :class:`UsageError` for profiles of different models, modes or inputs."""
    if (base.model, base.mode, base.input, base.batch) != (new.model, new.mode, new.input, new.batch):
        raise UsageError(f"{quoted(base_label, PATH_ECHO_LIMIT)} profiles {base.label()} and "
                         f"{quoted(new_label, PATH_ECHO_LIMIT)} profiles {new.label()}: diff compares profiles of one model, mode, input "
                         "and batch.")
    base_layers = {layer.name: layer for layer in base.layers}
    new_layers = {layer.name: layer for layer in new.layers}
    common = [name for name in base_layers if name in new_layers]
    samples = {STEP: (base.unprofiled_ms, new.unprofiled_ms)}
    samples.update({name: (base_layers[name].time_ms, new_layers[name].time_ms) for name in common})
    tested = {name: pair for name, pair in samples.items() if _testable(pair[0]) and _testable(pair[1])}
    pvalues = {name: mann_whitney_u(b_new, b_base)[1] for name, (b_base, b_new) in tested.items()}
    adjusted = dict(zip(pvalues, holm(list(pvalues.values()))))
    layers = []
    for name in samples:
        if name not in tested:
            continue
        before, after = samples[name]
        estimate = ratio_ci(before, after, confidence)
        b, n = (base_layers.get(name), new_layers.get(name))
        layers.append(LayerDiff(
            name=name, base_median_ms=median(before), new_median_ms=median(after), ratio=estimate.ratio,
            low=estimate.low, high=estimate.high, p=pvalues[name], p_holm=adjusted[name],
            verdict=verdict(estimate.low, estimate.high, adjusted[name], alpha=alpha, min_effect=min_effect),
            base_flops=b.flops if b else base.flops, new_flops=n.flops if n else new.flops,
            base_bytes=b.bytes if b else 0, new_bytes=n.bytes if n else 0))
    untested = [name for name in samples if name not in tested]
    notes = [f"{len(untested)} module(s) have no positive time in one of the profiles (not tested): "
             f"{', '.join(n or '(model)' for n in untested[:5])}"] if untested else []
    return ProfileDiff(base_label, new_label, env_differences(base.env, new.env), allow_env_change, tuple(layers),
                       tuple(n for n in base_layers if n not in new_layers),
                       tuple(n for n in new_layers if n not in base_layers), tuple(notes), min_effect, alpha)


def _testable(samples) -> bool:
    return bool(samples) and all(math.isfinite(t) and t > 0 for t in samples)


def profile_diff_to_json(result: ProfileDiff) -> dict:
    from archbench.files import jsonable

    return jsonable({
        "base": result.base_label, "new": result.new_label, "outcome": result.outcome,
        "comparable": result.comparable, "min_effect": result.min_effect, "alpha": result.alpha,
        "environment_differences": [vars(d) for d in result.env_differences],
        "layers": [vars(layer) for layer in result.layers],
        "only_in_base": list(result.only_in_base), "only_in_new": list(result.only_in_new), "notes": list(result.notes),
    })
