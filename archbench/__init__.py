"""archbench: what a vision architecture costs, from one command.

The library never prints; :mod:`archbench.cli` is the only module that does. Importing this package
does not import torch.
"""

from archbench.api import bench, compare, count, estimate_memory, measure, profile, summarize
from archbench.catalog.registry import build_model, count_params, get_spec, list_models, register_family
from archbench.catalog.source import ModelSource, ModuleSource
from archbench.catalog.spec import ModelSpec
from archbench.errors import (
    ArchbenchError,
    DeviceUnavailableError,
    ModelOutOfMemoryError,
    ModelRunError,
    SpecError,
    StudyError,
    UnknownModelError,
    UsageError,
)
from archbench.rows import CellKey, ResultRow
from archbench.timing.options import MeasureOptions, WarmupPolicy
from archbench.version import __version__


def register_flop_formula(op, fn, kind: str = "macs", source: str | None = None) -> None:
    """Count the torch op ``op`` with ``fn`` (see :func:`archbench.costs.formula_registry.register_flop_formula`)."""
    from archbench.costs.formula_registry import register_flop_formula as register  # imports torch

    register(op, fn, kind, source)

__all__ = [
    "ArchbenchError",
    "CellKey",
    "MeasureOptions",
    "ModelSource",
    "ModuleSource",
    "WarmupPolicy",
    "bench",
    "compare",
    "count",
    "estimate_memory",
    "measure",
    "profile",
    "summarize",
    "DeviceUnavailableError",
    "ModelOutOfMemoryError",
    "ModelRunError",
    "ModelSpec",
    "ResultRow",
    "SpecError",
    "StudyError",
    "UnknownModelError",
    "UsageError",
    "__version__",
    "build_model",
    "count_params",
    "get_spec",
    "list_models",
    "register_family",
    "register_flop_formula",
]
