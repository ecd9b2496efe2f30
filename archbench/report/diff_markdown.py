"""``archbench diff --markdown``: a :class:`~archbench.diff.runs.DiffResult` as Markdown, ready for a pull
request comment (▲ slower / ▼ faster / = unchanged / ? noisy / ≠ not comparable), and the cell texts the CLI's
table shares."""

from __future__ import annotations

import math

from archbench.diff.comparability import CELL_SYMBOLS, NOT_COMPARABLE_TEXT
from archbench.diff.runs import CellDiff, DiffResult
from archbench.timing.stats import NOISY_IQR_FRACTION
from archbench.units import coverage_percent, fmt_ms, fmt_sig

_ORDER = {"slower": 0, "faster": 1, "not comparable": 2, "noisy": 3, "unchanged": 4}


def cells_by_verdict(result: DiffResult) -> list[CellDiff]:
    """Slower cells first, then faster, not comparable, noisy and unchanged (each in the runs' order)."""
    return sorted(result.cells, key=lambda c: _ORDER[c.verdict])


def percent(ratio: float) -> str:
    """A time ratio as a change: 1.098 -> ``+9.8%``."""
    return "—" if not math.isfinite(ratio) else f"{(ratio - 1) * 100:+.1f}%"


def ci_text(cell: CellDiff, confidence: float) -> str:
    """``+8.1% … +11.6%``; the interval's coverage is added when it is below ``confidence``."""
    coverage = f" ({coverage_percent(cell.coverage)} CI)" if cell.coverage < confidence - 1e-9 else ""
    return f"{percent(cell.low)} … {percent(cell.high)}{coverage}"


def change_text(cell: CellDiff, confidence: float) -> str:
    """``+9.8% (+8.1% … +11.6%)``."""
    return f"{percent(cell.ratio)} ({ci_text(cell, confidence)})"


def count_text(value: float) -> str:
    """An exact count in full (``11,689,512``); a fractional one (MACs per sample) with 6 digits."""
    return f"{int(value):,}" if float(value).is_integer() else fmt_sig(value, 6)


def p_text(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def verdict_text(cell: CellDiff) -> str:
    """``▲ slower``; ``≠ not comparable (measured under load)``."""
    return f"{CELL_SYMBOLS[cell.verdict]} {NOT_COMPARABLE_TEXT if cell.verdict == 'not comparable' else cell.verdict}"


def summary_line(result: DiffResult) -> str:
    """``regressed: ▲ 2 slower · ▼ 1 faster · = 10 unchanged · ? 3 noisy`` (+ cells not comparable, cells
    failing now)."""
    counts = result.verdict_counts()
    parts = [f"{CELL_SYMBOLS[v]} {counts[v]} {v}" for v in ("slower", "faster", "unchanged", "noisy")]
    if counts["not comparable"]:
        parts.append(f"{CELL_SYMBOLS['not comparable']} {counts['not comparable']} {NOT_COMPARABLE_TEXT}")
    if result.newly_failed:
        parts.append(f"✗ {len(result.newly_failed)} failing that ran in the base")
    return f"{result.outcome}: {' · '.join(parts)}"


def rule_text(result: DiffResult) -> str:
    """The decision rule, with this diff's thresholds."""
    effect, confidence = f"±{result.min_effect * 100:g}%", f"{result.confidence * 100:g}%"
    return (f"▲ slower / ▼ faster: Mann–Whitney U on the raw samples significant (Holm-adjusted over the cells, "
            f"p < {result.alpha:g}) and the whole {confidence} CI of the time ratio new/base (Hodges–Lehmann "
            f"estimate, Moses interval) beyond {effect}; = unchanged: the CI within {effect}; ? noisy: neither. "
            "A cell that ran in the base and fails in the new run is a regression too." + _set_aside_rule(result))


def _set_aside_rule(result: DiffResult) -> str:
    """The rule for cells set aside, told only where a diff has some (a quiet diff reads as before)."""
    if not any(c.reason for c in result.cells):
        return ""
    return (f" Set aside before the test, never a regression: ≠ not comparable, measured under load in either run; "
            f"? noisy, flagged noisy (IQR above {NOISY_IQR_FRACTION:.0%} of the median) or a CI covering less than "
            f"{result.confidence * 100:g}%.")


def set_aside(result: DiffResult) -> list[CellDiff]:
    """The cells set aside (not comparable, or noisy for a flag or a short CI), in the table's order."""
    return [c for c in cells_by_verdict(result) if c.reason]


def diff_markdown(result: DiffResult) -> str:
    lines = [f"### archbench diff: `{result.base_label}` → `{result.new_label}`", "", f"**{summary_line(result)}**", ""]
    if result.env_differences:
        consequence = ("compared anyway, as asked" if result.comparable
                       else "the runs are not comparable: no cell is called a regression")
        lines += [f"**Environment differences** ({consequence}):", "", "| | base | new |", "|:--|:--|:--|"]
        lines += [f"| {d.name} | {_cell(d.base)} | {_cell(d.new)} |" for d in result.env_differences]
        lines.append("")
    confidence = f"{result.confidence * 100:g}%"
    lines += [f"| cell | base ms | new ms | change ({confidence} CI) | p (Holm) | |", "|:--|--:|--:|--:|--:|:--|"]
    for cell in cells_by_verdict(result):
        lines.append(f"| `{cell.key.label()}` | {fmt_ms(cell.base_median_ms)} | {fmt_ms(cell.new_median_ms)} | "
                     f"{change_text(cell, result.confidence)} | {p_text(cell.p_holm)} | {verdict_text(cell)} |")
    lines.append("")
    lines += _set_aside_lines(result) + _failed_lines(result) + _only_lines(result) + _count_lines(result)
    lines += [f"- {_cell(note)}" for note in result.notes] + ([""] if result.notes else [])
    lines.append(f"<sub>{rule_text(result)}</sub>")
    return "\n".join(lines) + "\n"


def _set_aside_lines(result: DiffResult) -> list[str]:
    cells = set_aside(result)
    if not cells:
        return []
    lines = [f"**Not judged** ({len(cells)}): their times cannot show a change, whatever the ratio:", ""]
    lines += [f"- `{c.key.label()}`: {verdict_text(c)} — {_cell(c.reason)}" for c in cells]
    return [*lines, ""]


def _failed_lines(result: DiffResult) -> list[str]:
    if not result.failed:
        return []
    lines = ["**Failed cells:**", ""]
    for failed in result.failed:
        mark = " — ✗ regression" if failed.newly_failed else ""
        why = f": {_cell(failed.error)}" if failed.error else ""
        lines.append(f"- `{failed.key.label()}`: {failed.base_status} → {failed.new_status}{why}{mark}")
    return [*lines, ""]


def _only_lines(result: DiffResult) -> list[str]:
    lines = []
    for side, keys in (("base", result.only_in_base), ("new run", result.only_in_new)):
        if keys:
            lines += [f"**Only in the {side}** ({len(keys)}): " + ", ".join(f"`{k.label()}`" for k in keys), ""]
    return lines


def _count_lines(result: DiffResult) -> list[str]:
    if not result.count_changes:
        return []
    lines = ["**Exact count changes:**", "", "| what | count | base | new |", "|:--|:--|--:|--:|"]
    lines += [f"| {c.what} | {c.name} | {count_text(c.base)} | {count_text(c.new)} |" for c in result.count_changes]
    return [*lines, ""]


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")
