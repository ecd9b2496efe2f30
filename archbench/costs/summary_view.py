"""How a model summary reads: rich (terminal) and GitHub-flavoured Markdown views of a
:class:`~archbench.costs.summary.ModelSummary`, with the units and conventions of every figure.
Builds renderables and text; never prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from archbench.fitted import Column, fitted_table
from archbench.parsing import format_input
from archbench.units import mib, si

if TYPE_CHECKING:
    from archbench.costs.summary import LayerRow, ModelSummary

# ------------------------------------------------------------------------------------ formatting


def shapes_text(row: LayerRow) -> str:
    if row.output_shape is None:
        return "—"
    text = "x".join(map(str, row.output_shape)) or "scalar"
    return text + (f" (×{row.calls})" if row.calls > 1 else "")


def macs_text(row: LayerRow) -> str:
    """MACs of a layer: '—' if it never ran; a '*' when it ran ops that no formula counts."""
    if row.macs is None:
        return "—"
    return f"{row.macs:,}" + ("*" if row.uncounted_ops else "")


def norm_text(row: LayerRow) -> str:
    return "—" if row.macs_with_norm is None else f"{row.macs_with_norm:,}"


def share_text(row: LayerRow, total: int) -> str:
    if row.macs is None or not total:
        return "—"
    return f"{100 * row.macs / total:.2f}%"


def ops_text(ops: dict[str, int], limit: int = 12) -> str:
    items = [f"{op} ×{n}" for op, n in ops.items()]
    if len(items) > limit:
        items = items[:limit] + [f"… {len(items) - limit} more"]
    return ", ".join(items) if items else "none"


def flagged(flag: str) -> str:
    """A total's incomplete flag, to follow its value (``" — incomplete: 2 ops uncounted"``), or ``""``."""
    return f" — {flag}" if flag else ""


def header_lines(s: ModelSummary) -> list[tuple[str, str]]:
    lines = [("model", s.model)] + ([("reference", s.reference)] if s.reference else []) + [("family", s.family)]
    if s.description:
        lines.append(("reproduces", s.description))
    if s.overrides:
        lines.append(("overrides", ", ".join(f"{k}={v!r}" for k, v in s.overrides.items())))
    lines += [("input", f"{format_input(s.input)}, batch {s.batch}"), ("device", f"{s.device}, {s.dtype}"),
              ("torch", s.torch_version)]
    return lines


def total_lines(s: ModelSummary) -> list[tuple[str, str, str]]:
    """(quantity, value, convention) rows of the totals."""
    st = s.stats
    forward, backward = flagged(st.macs_flag), flagged(st.flops_backward_flag)
    return [
        ("parameters", f"{st.params_total:,}",
         f"trainable {st.params_trainable:,}, non-trainable {s.params_non_trainable:,}"),
        ("buffers", f"{st.buffers:,}", "elements (e.g. BatchNorm running statistics)"),
        ("parameter memory", mib(st.param_bytes), "parameters + buffers"),
        ("forward MACs", f"{st.macs:,} ({si(st.macs)}){forward}",
         "convolutions, matrix products, attention (torchvision _ops convention; 1 MAC = 2 FLOPs)"),
        ("MACs with norm", f"{st.macs_with_norm:,} ({si(st.macs_with_norm)}){forward}",
         "MACs + normalisation and pooling, fvcore's formulas (fvcore / timm infer_gmacs convention)"),
        ("other ops", si(st.other_ops), "activations, elementwise, softmax, max pooling: one op per element"),
        ("forward FLOPs", si(st.flops_forward) + forward, "2 × MACs"),
        ("backward FLOPs", si(st.flops_backward) + backward,
         "training step, same ops as MACs (conv, matmul, attention gradients; grouped convs corrected)"),
        ("activation memory", mib(st.activation_bytes),
         f"measured: saved for backward, training mode, batch {s.batch}" + (
             f" (counted at batch {s.training_batch} and scaled: BatchNorm cannot train on one sample)"
             if s.training_batch != s.batch else "")),
    ]


def coverage_lines(s: ModelSummary) -> list[tuple[str, str]]:
    c = s.coverage
    lines = [
        ("MACs by op", ops_text({op: si(v) for op, v in c.macs_by_op.items()}).replace(" ×", " ")),
        ("norm/pool MACs by op", ops_text({op: si(v) for op, v in c.norm_pool_macs_by_op.items()}).replace(" ×", " ")),
        ("other ops by op", ops_text({op: si(v) for op, v in c.other_ops_by_op.items()}).replace(" ×", " ")),
        ("no arithmetic (times run)", ops_text(c.free_ops)),
        ("uncounted: no formula (times run)", ops_text(s.stats.uncounted_ops)),
        ("uncounted in backward", ops_text(c.backward_uncounted_ops)),
    ]
    if c.user_formulas:
        lines.append(("user formulas", ", ".join(f"{op} ({how.split(': ', 1)[1]})" for op, how in c.user_formulas.items())))
    return lines


_FOOTNOTE = ("output shape and params: torchinfo; MACs: convolutions, matrix products, attention "
             "(torchvision _ops convention); with norm: + normalisation and pooling (fvcore's formulas); "
             "(self): ops run in the module's own forward; * the layer also ran ops no formula counts (see "
             "coverage); — not run at inference (a ModuleList is never called itself)")


# -------------------------------------------------------------------------------------- rich


def summary_renderable(s: ModelSummary) -> Group:
    """The summary as one rich renderable (``ModelSummary.__rich__``; ``archbench summary`` prints it)."""
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column(overflow="fold")
    for key, value in header_lines(s):
        header.add_row(key, escape(value))
    parts: list = [header]

    if s.layers:
        parts += [LayerTable(s), Text(_FOOTNOTE, style="dim")]

    totals = Table(title="totals", title_justify="left", box=box.SIMPLE_HEAD)
    totals.add_column("quantity", style="bold")
    totals.add_column("value", justify="right")
    totals.add_column("convention", style="dim", overflow="fold")
    for row in total_lines(s):
        totals.add_row(*map(escape, row))
    parts.append(totals)

    notes = Table.grid(padding=(0, 2))
    notes.add_column(style="bold")
    notes.add_column(overflow="fold")
    for key, value in coverage_lines(s):
        notes.add_row(key, escape(value))
    mark = {True: "[green]agrees[/]", False: "[yellow]differs[/]", None: "[dim]not checked[/]"}[s.cross_check.agrees]
    notes.add_row("cross-check", f"{mark}: {escape(s.cross_check.note)}")
    parts.append(notes)
    return Group(*parts)


# Dropped in this order when the terminal is narrow: output shapes, then types, then MACs with norm; a long
# layer name is shortened in the middle. Numbers are never cut.
_LAYER_COLUMNS = (Column("layer", shorten=32), Column("type", drop=2), Column("output shape", drop=3),
                  Column("params", "right"), Column("MACs", "right"), Column("MACs with norm", "right", drop=1),
                  Column("share", "right"))


def layer_table(s: ModelSummary, width: int = 10_000) -> Table:
    """The layer rows as a table that fits ``width`` columns."""
    depth = f" (depth ≤ {s.depth})" if s.depth is not None else ""
    total = s.stats.macs
    body = [["  " * (row.depth - 1) + escape(row.name), escape(row.type), shapes_text(row), f"{row.params:,}",
             macs_text(row), norm_text(row), share_text(row, total)] for row in s.layers]
    return fitted_table(_LAYER_COLUMNS, body, width, title=f"layers{depth}", title_justify="left")


class LayerTable:
    """The layer table, fitted to the width it is rendered at (a summary is printed at any terminal width)."""

    def __init__(self, s: ModelSummary) -> None:
        self.summary = s

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield layer_table(self.summary, options.max_width)


# ----------------------------------------------------------------------------------- Markdown


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def summary_markdown(s: ModelSummary) -> str:
    """The summary as GitHub-flavoured Markdown (the same content as the rich view)."""
    lines = [f"## archbench summary: {s.model}", "", "| | |", "|:--|:--|"]
    lines += [f"| **{key}** | {_cell(value)} |" for key, value in header_lines(s)]
    if s.layers:
        depth = f" (depth ≤ {s.depth})" if s.depth is not None else ""
        lines += ["", f"### Layers{depth}", "", "| layer | type | output shape | params | MACs | MACs with norm | share |",
                  "|:--|:--|:--|--:|--:|--:|--:|"]
        total = s.stats.macs
        for row in s.layers:
            indent = "\u00a0\u00a0" * (row.depth - 1)  # no-break spaces: Markdown keeps them
            lines.append(f"| {indent}{_cell(row.name)} | {_cell(row.type)} | {shapes_text(row)} | {row.params:,} | "
                         f"{_cell(macs_text(row))} | {norm_text(row)} | {share_text(row, total)} |")
        lines += ["", f"<sub>{_cell(_FOOTNOTE)}</sub>"]
    lines += ["", "### Totals", "", "| quantity | value | convention |", "|:--|--:|:--|"]
    lines += [f"| {q} | {v} | {_cell(c)} |" for q, v, c in total_lines(s)]
    lines += ["", "### Coverage and cross-check", ""]
    lines += [f"- **{key}**: {value}" for key, value in coverage_lines(s)]
    verdict = {True: "agrees", False: "differs", None: "not checked"}[s.cross_check.agrees]
    lines.append(f"- **cross-check** ({verdict}): {s.cross_check.note}")
    return "\n".join(lines) + "\n"
