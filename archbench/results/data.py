"""The data of one report (its study, rows, counts and environments): what every reader of a results file,
run or folder gives and every format writes (no torch import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archbench.rows import ModelStats, ResultRow
from archbench.study import Study


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about a model besides its counts."""

    name: str
    family: str
    description: str
    input: str  # the model's default input, "3x32x32"


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows.

    ``stats`` are batch-1 counts, one per model and input (each model's default input and every input
    of the grid); ``stats_errors`` holds ``(model, input, message)`` where a model did not run on an
    input. ``environments`` is one fingerprint per session that measured rows (more than one after
    ``--resume``). ``date`` is when the last cell finished (UTC, ISO 8601)."""

    study: Study
    rows: tuple[ResultRow, ...]
    models: tuple[ModelInfo, ...]
    stats: tuple[ModelStats, ...] = ()
    stats_errors: tuple[tuple[str, str, str], ...] = ()
    environments: tuple[Mapping[str, Any], ...] = ()
    peaks_tflops: Mapping[str, float] = field(default_factory=dict, hash=False)
    command: str = ""
    date: str = ""
    planned_cells: int = 0

    @property
    def environment(self) -> Mapping[str, Any]:
        """The fingerprint of the first session (the one the report shows in full)."""
        return self.environments[0] if self.environments else {}

    def stats_for(self, model: str, input: str) -> ModelStats | None:
        return next((s for s in self.stats if s.model == model and s.input == input), None)

    def stats_error(self, model: str, input: str) -> str | None:
        return next((msg for m, i, msg in self.stats_errors if m == model and i == input), None)

    def info(self, model: str) -> ModelInfo | None:
        return next((m for m in self.models if m.name == model), None)

    @property
    def complete(self) -> bool:
        return len(self.rows) >= self.planned_cells
