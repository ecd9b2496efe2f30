"""The knee of a throughput curve: the smallest batch whose throughput is within :data:`KNEE_SHARE` of the best
on its line (one model, device, dtype, mode and input) — the batch worth running, past which a larger batch
buys little. Shown in the throughput plot and the report's table with the largest batch a ``max`` search
found."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from archbench.rows import ResultRow

KNEE_SHARE = 0.05  # within 5% of the best throughput


@dataclass(frozen=True)
class Knee:
    """One throughput curve's best point, its knee, and the batch a ``max`` search found on it (0: none)."""

    model: str
    device: str
    dtype: str
    mode: str
    input: str
    best_batch: int
    best_samples_per_s: float
    knee_batch: int
    knee_samples_per_s: float
    max_batch: int = 0
    max_bound: str = ""
    points: int = 0
    backend: str = "eager"  # each backend its own curve


def knees(rows: Iterable[ResultRow]) -> list[Knee]:
    """A :class:`Knee` per curve with at least two batches measured (ok rows with a throughput)."""
    lines: dict[tuple, list[ResultRow]] = {}
    for r in rows:
        if r.status == "ok" and math.isfinite(r.samples_per_s) and r.samples_per_s > 0:
            lines.setdefault((r.model, r.device, r.dtype, r.mode, r.input, r.backend), []).append(r)
    found = []
    for key, line in lines.items():
        if len({r.batch for r in line}) < 2:
            continue
        line.sort(key=lambda r: r.batch)
        best = max(line, key=lambda r: r.samples_per_s)
        knee = next(r for r in line if r.samples_per_s >= (1 - KNEE_SHARE) * best.samples_per_s)
        searched = next((r for r in line if r.max_batch_bound), None)
        found.append(Knee(*key[:5], best.batch, best.samples_per_s, knee.batch, knee.samples_per_s,
                          searched.batch if searched else 0, searched.max_batch_bound if searched else "", len(line),
                          backend=key[5]))
    return found
