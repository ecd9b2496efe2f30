"""What one cell of the report's tables says: a time with its CI (labelled with its coverage when below 95%),
samples/s, TFLOP/s and % of peak, peak memory; a failed cell as ``OOM``/``error`` and the numbered footnotes
that say why; the note of cells measured under load (``‡``) and of those that stopped before their CI met the
precision target (``†``)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from archbench.results.significance import ci_coverage
from archbench.rows import ResultRow
from archbench.timing.load import LOAD_THRESHOLD
from archbench.timing.stats import CONFIDENCE
from archbench.units import coverage_percent, fmt_ms, fmt_sig

NOT_CONVERGED = "†"  # sampling stopped before the CI met the precision target
LOAD_MARK = "‡"  # measured under load


class Footnotes:
    """Numbers the messages of failed cells (one number per distinct message) for the tables that
    mention them. ``style="markdown"`` marks with ``[^n]`` (GitHub footnotes), ``"plain"`` with ``[n]``."""

    def __init__(self, style: str = "markdown"):
        self.style = style
        self.messages: list[str] = []

    def mark(self, message: str) -> str:
        if message not in self.messages:
            self.messages.append(message)
        number = self.messages.index(message) + 1
        return f"[^{number}]" if self.style == "markdown" else f" [{number}]"

    def items(self) -> list[tuple[int, str]]:
        return list(enumerate(self.messages, start=1))


def ci_label(row: ResultRow) -> str:
    """``95% CI``, or the actual coverage (``93.7% CI``) of an interval that covers less."""
    coverage = ci_coverage(row)
    if not math.isfinite(coverage) or coverage >= CONFIDENCE:
        return f"{100 * CONFIDENCE:g}% CI"
    return f"{coverage_percent(coverage)} CI"


def under_coverage(row: ResultRow) -> bool:
    return math.isfinite(ci_coverage(row)) and ci_coverage(row) < CONFIDENCE


def load_message(row: ResultRow) -> str:
    if row.rounds:  # interleaved: the load was read around each of its bursts
        inflated = f"its median is about ×{row.load_ratio:.2f} what the quiet rounds ran at" if math.isfinite(
            row.load_ratio) else "no round was quiet, so how much is unknown"
        why = (f"over a tenth of its bursts ran under CPU pressure, in {row.loaded_rounds} of its {row.rounds} rounds "
               f"({inflated}); its paired ratio leaves those rounds out"
               + (", and fewer than six were quiet: not comparable (measured under load)" if row.paired_reason else ""))
    elif row.load_ratio > LOAD_THRESHOLD:
        why = f"the calibration kernel ran {row.load_ratio:.2f}× slower around this cell than at the start of the sweep"
    else:
        why = "other processes kept the CPU cores it needed busy while it ran"
    return (f"{row.model}, {row.device} {row.mode}, batch {row.batch}, {row.input}, {row.dtype}: measured under load — "
            f"{why}, so its time is probably inflated.")


def failure_label(row: ResultRow) -> str:
    return "OOM" if row.status == "oom" else "error"


def failure_message(row: ResultRow) -> str:
    return f"{row.model}, {row.device} {row.mode}, batch {row.batch}, {row.input}, {row.dtype}: {row.error or row.status}"


def load_note(rows: Iterable[ResultRow]) -> str:
    """One note for every cell measured under load (each marked ``‡`` in the speed tables), or ``""``: each way
    the load was found said once, then the cells it found, short, with how much it slowed each."""
    loaded = [r for r in rows if r.status == "ok" and r.under_load]
    if not loaded:
        return ""
    groups: dict[str, list[str]] = {}
    for row in loaded:
        reason, figure = _load_reason(row)
        groups.setdefault(reason, []).append(f"{_cell_name(row)}{f' ({figure})' if figure else ''}")
    said = "; ".join(f"{reason}: {', '.join(names)}" for reason, names in groups.items())
    return f"{LOAD_MARK} Measured under load, so probably inflated (measure these again on a quiet machine) — {said}."


def _cell_name(row: ResultRow) -> str:
    return f"{row.model} {row.device} {row.mode} b{row.batch} {row.input} {row.dtype}"


def _load_reason(row: ResultRow) -> tuple[str, str]:
    """How the load on ``row`` was found (said once for all such cells) and the cell's own figure."""
    if row.rounds:  # interleaved: the load was read around each of its bursts
        figure = f"×{row.load_ratio:.2f}" if math.isfinite(row.load_ratio) else "too few quiet bursts to say how much"
        if row.paired_reason:
            return ("fewer than six of their interleaved rounds were quiet, even with three times the time budget: "
                    "their ratio to the reference is not comparable (measured under load)",
                    f"{figure}, {row.loaded_rounds} of {row.rounds} rounds")
        return ("over a tenth of their interleaved bursts ran under CPU pressure (× their median over the quiet "
                "rounds'; paired ratios leave the loaded rounds out)",
                f"{figure}, {row.loaded_rounds} of {row.rounds} rounds")
    if row.load_ratio > LOAD_THRESHOLD:
        return ("the calibration kernel ran slower around the cell than at the start of the sweep",
                f"×{row.load_ratio:.2f}")
    return "other processes kept the CPU cores the cell needed busy", ""


def ci_text(row: ResultRow) -> str:
    """``12.1–12.6``, with the coverage when below 95% (``12.1–12.6; 93.7% CI``)."""
    coverage = f"; {ci_label(row)}" if under_coverage(row) else ""
    return f"{fmt_ms(row.ci_low_ms)}–{fmt_ms(row.ci_high_ms)}{coverage}"


def time_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    """``12.3 (12.1–12.6)†``: the median in ms and its CI, one number per cell (for a paper)."""
    mark = NOT_CONVERGED if row.stop_reason and row.stop_reason != "precision" else ""
    return f"{fmt_ms(row.median_ms)} ({ci_text(row)}){mark}"


def throughput_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    return fmt_sig(row.samples_per_s)


def speed_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    """``12.3 ms (12.1–12.6) · 650 /s``; ``†`` when sampling stopped before the CI met the precision target."""
    mark = NOT_CONVERGED if row.stop_reason and row.stop_reason != "precision" else ""
    return f"{fmt_ms(row.median_ms)} ms ({ci_text(row)}){mark} · {fmt_sig(row.samples_per_s)} /s"


def efficiency_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    """``0.123 (12.3%)`` — achieved TFLOP/s and fraction of the measured device peak; a row's note (why
    there is no count or no % of peak) as a footnote."""
    note = footnotes.mark(row.note) if footnotes is not None and row.note else ""
    if not math.isfinite(row.achieved_tflops):
        return "—" + note
    share = f" ({100 * row.peak_fraction:.1f}%)" if math.isfinite(row.peak_fraction) else ""
    return f"{fmt_sig(row.achieved_tflops)}{share}{note}"


def memory_cell(row: ResultRow, footnotes: Footnotes | None = None) -> str:
    return fmt_sig(row.peak_mem_mb)


def cell_context(row: ResultRow, with_dtype: bool) -> str:
    parts = [row.mode, f"batch {row.batch}", row.input, row.device, *([row.dtype] if with_dtype else [])]
    return ", ".join(parts)
