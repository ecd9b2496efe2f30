"""Speed-up vs eager: each non-eager backend's cell against the eager cell of the same model and grid point,
with its build time and how far its output is from eager's (archbench.timing.backends).

The backends of a grid point are measured one after the other, not in alternating rounds (torch.compile's
graphs live on the model class's code, and an AOTInductor or onnxruntime build takes seconds to minutes), so
the speed-up is the unpaired one of :func:`archbench.report.relative.relative_speed`: ``eager median / backend
median`` with the interval from the CI ends, covering at least the product of the two coverages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from archbench.report.relative import relative_speed
from archbench.results.significance import RatioEstimate
from archbench.rows import ResultRow
from archbench.units import fmt_sig, fmt_spec

SPEEDUP_METHOD = (
    "Speed-up = eager median / backend median (> 1: the backend is faster), for the same model, input, batch, mode, "
    "dtype and threads; the interval is taken from the two CIs' ends (eager_low / high – eager_high / low), so it "
    "covers at least the product of their coverages (the backends were timed one after the other, not in paired "
    "rounds). Build: seconds to make the backend ready, outside the timed samples (compile: the compiling first "
    "call; export: torch.export + AOTInductor compile + load; onnxruntime: export + ONNX conversion + session). "
    "Max rel. err: the largest absolute difference between the backend's output and eager's on the same input, "
    "over the largest magnitude of eager's output (inference only); **numerics** flags one beyond the dtype's "
    "tolerance (fp32 1e-3, fp16 1e-2, bf16 5e-2)."
)


@dataclass(frozen=True)
class BackendComparison:
    """A non-eager row and, when the eager cell of the same point ran, its speed-up against it."""

    row: ResultRow
    eager: ResultRow | None
    speed: RatioEstimate | None

    @property
    def numerics(self) -> str:
        """The row's numerics flag (``numerics: ...`` note), ``""`` when within tolerance or unchecked."""
        return next((part for part in self.row.note.split("; ") if part.startswith("numerics:")), "")

    @property
    def speedup_text(self) -> str:
        return self.speed.text() if self.speed is not None else "—"


def _eager_key(row: ResultRow) -> tuple:
    return row.key()._replace(backend="eager", compiled=False)


def backend_comparisons(rows: Iterable[ResultRow]) -> list[BackendComparison]:
    """Every non-eager row (failed ones too: their reason is the point), in the rows' order, with its speed-up
    against the ok eager row of its point (None without one, or when the row itself failed)."""
    rows = list(rows)
    eager = {r.key(): r for r in rows if r.backend == "eager" and r.status == "ok"}
    found = []
    for row in rows:
        if row.backend == "eager":
            continue
        reference = eager.get(_eager_key(row))
        speed = relative_speed(reference, row) if reference is not None and row.status == "ok" and row.median_ms > 0 \
            else None
        found.append(BackendComparison(row, reference, speed))
    return found


def _cell(row: ResultRow) -> str:
    return f"{row.mode} · b{row.batch} · {row.input} · {row.device} · {row.dtype}"


def comparison_cells(item: BackendComparison, with_reason: bool = True) -> list[str]:
    """model, backend, cell, speed-up, build s, max abs err, max rel err, status (what every renderer shows; a
    failed row's reason after its status ``with_reason``)."""
    row = item.row
    if row.status != "ok":
        status = f"{row.status}: {row.error}" if with_reason else row.status
    else:
        status = "**numerics**" if item.numerics else "ok"
    build = f"{fmt_sig(row.compile_s)}" if math.isfinite(row.compile_s) else "—"
    return [row.model, row.backend, _cell(row), item.speedup_text, build, fmt_spec(row.max_abs_err, ".2g"),
            fmt_spec(row.max_rel_err, ".2g"), status]


COMPARISON_HEADERS = ["model", "backend", "cell", "speed-up vs eager", "build s", "max abs err", "max rel err", "status"]


def backends_section(rows: Iterable[ResultRow]) -> list[str]:
    """The report's ``Speed-up vs eager`` section (Markdown lines; none when every row is eager)."""
    from archbench.report.markdown import md_table

    found = backend_comparisons(rows)
    if not found:
        return []
    body = [comparison_cells(item) for item in found]
    notes = [f"- {item.row.model} · {item.row.backend} · {_cell(item.row)}: {item.numerics}" for item in found
             if item.numerics]
    return ["## Speed-up vs eager", "", SPEEDUP_METHOD, "",
            md_table(COMPARISON_HEADERS, body, ["l", "l", "l", "r", "r", "r", "r", "l"]), "",
            *([*notes, ""] if notes else [])]
