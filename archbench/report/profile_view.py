"""How a profile reads: its header lines (the step, overhead, coverage, the FLOP check, the roofs), its
module table (rich and GitHub-flavoured Markdown), and the report folder (``profile.md``, ``profile.json``,
the plots of :mod:`archbench.report.roofline`). Builds text and renderables; never prints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from archbench.files import atomic_write_text
from archbench.units import fmt_ms, fmt_sig, fmt_spec, si

if TYPE_CHECKING:
    from archbench.results.profiles import LayerProfile, ModelProfile

MARKDOWN_NAME = "profile.md"
JSON_NAME = "profile.json"
TRACE_NAME = "trace.json"
COLUMNS = ("module", "type", "ms", "95% CI", "own ms", "fwd ms", "bwd ms", "share", "GFLOPs", "MB", "FLOP/B",
           "GFLOP/s", "GB/s", "bound")
LEGEND = ("ms: median time per step (summed op self time of the subtree); 95% CI: of that median; own: ops in the "
          "module's own forward, not in a listed child; share: of the step's op time; GFLOPs: 2 x MACs; MB: bytes "
          "moved (10^6); FLOP/B: work FLOPs per byte; GFLOP/s, GB/s: achieved; bound: the roof it sits under")


def header_lines(p: ModelProfile) -> list[tuple[str, str]]:
    """``(what, value)`` lines above the table: every figure with its definition."""
    peaks = p.peaks
    check = "exact" if p.flops_match else f"MISMATCH: the summary counts {p.summary_flops:,}"
    return [
        ("profile", f"{p.label()} ({p.steps} profiled steps, stopped: {p.stop_reason.replace('_', ' ')})"),
        ("timed", f"{p.timing}; modules from record_function ranges of forward hooks, backward ops by the "
                  "sequence number of the forward op that made their autograd node"),
        ("step, unprofiled", f"{fmt_ms(p.unprofiled_median_ms)} ms median over {len(p.unprofiled_ms)} rounds "
                             f"(archbench's timer alone: {fmt_ms(p.timer_median_ms)} ms over {len(p.timer_ms)} samples)"),
        ("step, profiled", f"{fmt_ms(p.profiled_median_ms)} ms median; profiling overhead {p.overhead:+.1%} "
                           "(median over rounds of profiled / unprofiled step − 1)"),
        ("coverage", f"{fmt_spec(p.coverage, '.1%')} — the top-level modules' summed time / the unprofiled step, median over "
                     f"rounds (ops outside every module: {fmt_ms(_median(p.outside_ms))} ms)"),
        ("FLOPs", f"{p.flops:,} ({si(p.flops, 'FLOPs', 3)}) summed over modules, {check} against the summary's "
                  f"{'forward + backward' if p.mode == 'train' else 'forward'} FLOPs (2 per MAC)"),
        ("roofs", f"compute {fmt_sig(peaks.tflops * 1e3)} GFLOP/s (matmul peak, {p.dtype}); bandwidth "
                  f"{fmt_sig(peaks.gbps)} GB/s (STREAM copy {fmt_sig(peaks.copy_gbps)}, triad {fmt_sig(peaks.triad_gbps)}); "
                  f"ridge {fmt_sig(peaks.ridge)} FLOPs/byte" + (f" ({peaks.note})" if peaks.note else "")),
        ("bytes", "tensors read + written per op at dispatch (inputs, weights, outputs), no cache reuse"),
        ("work FLOPs", "2 per MAC (convolution, matrix products, normalisation, pooling) + 1 per elementwise "
                       "operation: the numerator of FLOPs/byte and GFLOP/s"),
    ]


def _median(values) -> float:
    from archbench.timing.stats import median

    return median(values) if values else math.nan


def layer_cells(p: ModelProfile, layer: LayerProfile) -> list[str]:
    low, high = layer.ci_ms
    indent = "  " * max(layer.depth - 1, 0)
    return [
        indent + (layer.name or "(model)"), layer.type, fmt_ms(layer.median_ms), f"{fmt_ms(low)}–{fmt_ms(high)}",
        fmt_ms(layer.own_median_ms) if not layer.leaf else "", fmt_ms(layer.forward_median_ms),
        fmt_ms(layer.backward_median_ms) if p.mode == "train" else "—", fmt_spec(layer.share_median, ".1%"),
        fmt_sig(layer.flops / 1e9), fmt_sig(layer.bytes / 1e6), fmt_sig(layer.intensity),
        fmt_sig(layer.achieved_tflops * 1e3), fmt_sig(layer.achieved_gbps), p.peaks.bound(layer.intensity),
    ]


def table_layers(p: ModelProfile) -> list[LayerProfile]:
    """The model's row, then every listed module in definition order."""
    return list(p.layers)


def profile_markdown(p: ModelProfile, plots: list[tuple[str, str]] = ()) -> str:
    lines = [f"# Profile: {p.label()}", ""]
    lines += [f"- **{what}**: {value}" for what, value in header_lines(p)]
    lines += [f"- **warning**: {w}" for w in p.warnings]
    lines += ["", LEGEND, "", "## Slowest modules", "", *_md_table([layer_cells(p, layer) for layer in p.leaves()[:10]]), ""]
    lines += ["## Every module", "", *_md_table([layer_cells(p, layer) for layer in table_layers(p)]), ""]
    for stem, caption in plots:
        lines += [f"## {caption}", "", f"![{caption}]({stem}.png) ([SVG]({stem}.svg))", ""]
    env = p.env
    if env:
        lines += ["## Environment", "", f"torch {env.get('torch', '?')}, {env.get('cpu_model', '?')}, "
                  f"{env.get('threads', '?')} threads, devices {env.get('devices', {})}", ""]
    return "\n".join(lines)


def _md_table(rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").strip() or " "

    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(COLUMNS) - 3) + ["---"]) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def profile_renderable(p: ModelProfile, limit: int | None = None):
    """A rich table of the modules (the model first, definition order), under the header lines."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    header = Table.grid(padding=(0, 1))
    header.add_column(style="bold")
    header.add_column()
    for what, value in header_lines(p):
        header.add_row(escape(what), escape(value))
    for warning in p.warnings:
        header.add_row("[yellow]warning[/]", escape(warning))
    return Group(header, ModuleTable(p, limit))


# Which columns a narrow terminal drops first: the module's type, then the forward/backward/own split, then the
# work and traffic totals, then the achieved rates. The time, its CI, the share and the bound always show.
_DROP = {"type": 4, "own ms": 3, "fwd ms": 3, "bwd ms": 3, "GFLOPs": 2, "MB": 2, "GB/s": 2, "FLOP/B": 1,
         "GFLOP/s": 1}


class ModuleTable:
    """The module table, fitted to the width it is rendered at (no figure cut)."""

    def __init__(self, p: ModelProfile, limit: int | None = None) -> None:
        self.profile, self.limit = p, limit

    def __rich_console__(self, console, options):
        from rich.markup import escape

        from archbench.fitted import Column, fitted_table

        columns = [Column(name, "left" if name in ("module", "type", "bound") else "right", drop=_DROP.get(name, 0),
                          shorten=28 if name == "module" else 0) for name in COLUMNS]
        layers = table_layers(self.profile)
        body = [[escape(c) for c in layer_cells(self.profile, layer)] for layer in layers[:self.limit or None]]
        yield fitted_table(columns, body, options.max_width, title="Modules", title_justify="left", caption=LEGEND,
                           caption_justify="left")


def write_profile_report(p: ModelProfile, out_dir: Path) -> list[Path]:
    """``profile.md`` (with the plots embedded), ``profile.json`` and the plots, into ``out_dir``."""
    from archbench.report.roofline import ROOFLINE, TIME_BREAKDOWN, write_profile_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_profile_plots(p, out_dir)
    files.append(atomic_write_text(out_dir / JSON_NAME, json.dumps(p.to_dict(), indent=2, default=str) + "\n"))
    files.append(atomic_write_text(out_dir / MARKDOWN_NAME, profile_markdown(p, [ROOFLINE, TIME_BREAKDOWN])))
    return files
