"""The ``[executor]`` and ``[targets.NAME]`` tables of a study file, and the Slurm options they give:
their keys and the check of each value (:mod:`archbench.execute.executors` runs them)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archbench.errors import quoted

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class SlurmOptions:
    """What each Slurm job asks for. ``exclusive``: no other job shares the node (on by default: CPU timings
    are only meaningful alone); ``sbatch``: further ``KEY=VALUE`` options, as ``sbatch --KEY=VALUE``."""

    partition: str | None = None
    gpus_per_job: int | None = None
    constraint: str | None = None
    time_limit_min: int = 30  # minutes (submitit always asks for a time; the partition default is not used)
    account: str | None = None
    qos: str | None = None
    exclusive: bool = True
    sbatch: tuple[tuple[str, str], ...] = ()


SLURM_KEYS = tuple(f.name for f in dataclasses.fields(SlurmOptions))


EXECUTOR_KEYS = ("kind", "workers", "detach", *(k for k in SLURM_KEYS))


TARGET_KEYS = SLURM_KEYS


_TABLE_TYPES: dict[str, tuple[type, ...]] = {"partition": (str,), "constraint": (str,), "account": (str,), "qos": (str,),
                                              "gpus_per_job": (int,), "time_limit_min": (int,), "exclusive": (bool,),
                                              "detach": (bool,), "sbatch": (dict,), "kind": (str,), "workers": (int, str)}


def table_problem(table: Mapping[str, Any], allowed: Sequence[str]) -> str | None:
    """What is wrong with an ``[executor]`` or ``[targets.NAME]`` table (None: nothing), naming the key."""
    for key, value in table.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            return f"unknown key {quoted(key)}.{hint} Allowed: {', '.join(allowed)}."
        types = _TABLE_TYPES[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            return f"{key}: {value!r} is not {_kind_of(types)}."
        if key in ("gpus_per_job", "time_limit_min") and value <= 0:
            return f"{key}: {value!r} is not a positive integer."
        if key == "kind" and value not in EXECUTORS:
            return f"kind: {value!r} is not one of {', '.join(EXECUTORS)}."
        if key == "workers" and not (value == "auto" or isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return f"workers: {value!r} is neither a positive integer nor \"auto\"."
        if key == "sbatch" and not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value.values()):
            return "sbatch: expected a table of sbatch options and their values, e.g. sbatch = { mem = \"32G\" }."
    return None


def _kind_of(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", dict: "a table"}
    return " or ".join(names[t] for t in types)

