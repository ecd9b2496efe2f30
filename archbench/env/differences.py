"""Whether two environment fingerprints would time alike: the fields that change timings, the differences
between two fingerprints, and one fingerprint for a run measured in several sessions (no torch import)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# What makes timings of two runs incomparable (``envinfo.environment`` keys), plus each device's name.
ENV_FIELDS: tuple[str, ...] = ("torch", "torchvision", "cuda", "cudnn", "gpu_driver", "cpu_model", "threads",
                               "tf32_matmul", "tf32_cudnn", "cudnn_benchmark")


@dataclass(frozen=True)
class EnvDifference:
    name: str
    base: str
    new: str


def env_fingerprint(env: Mapping[str, Any]) -> dict[str, str]:
    """The recorded fields that change timings (:data:`ENV_FIELDS` and ``device <name>`` per device), as text."""
    flat = {name: _text(env[name]) for name in ENV_FIELDS if name in env}
    for device, name in (env.get("devices") or {}).items():
        flat[f"device {device}"] = _text(name)
    return flat


def env_differences(base: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[EnvDifference, ...]:
    """Fields recorded in both fingerprints with different values (a field only one run recorded, e.g.
    a device only one of them used, is not a difference)."""
    before, after = env_fingerprint(base), env_fingerprint(new)
    return tuple(EnvDifference(name, before[name], after[name]) for name in before
                 if name in after and before[name] != after[name])


def merge_sessions(envs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One fingerprint for a run measured in several sessions (``--resume``): a field the sessions
    disagree on holds their values joined by `` | ``, so it differs from any single session's."""
    if len(envs) == 1:
        return dict(envs[0])
    merged: dict[str, Any] = {}
    for name in dict.fromkeys(k for env in envs for k in env):
        values = list(dict.fromkeys(json.dumps(env.get(name), sort_keys=True, default=str) for env in envs))
        merged[name] = envs[0].get(name) if len(values) == 1 else " | ".join(values)
    return merged


def _text(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
