r"""``report.tex``: the report's tables for a paper, as booktabs tables written by pandas
(``DataFrame.style.to_latex``, which renders with jinja2).

The file is a fragment: ``\input{report.tex}`` where the tables go, with ``\usepackage{booktabs}`` in the
preamble and nothing else. Every text is escaped for LaTeX and the report's signs (×, ±, µ, –, —, ·, ≥,
†) are written as LaTeX commands, so the file is plain ASCII and pdflatex needs no Unicode setup. The
tables are those of ``report.md`` in the same order, and ``[n]`` in a cell is the note ``n`` listed at
the end of the file (the same number as footnote ``n`` of ``report.md``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.files import atomic_write_text
from archbench.locations import LATEX_NAME
from archbench.report import cells, relative, tables
from archbench.report.cells import Footnotes
from archbench.report.markdown import pretty_date
from archbench.report.tables import TableKey

if TYPE_CHECKING:
    import pandas as pd

    from archbench.results.data import ReportData

LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
}
LATEX_SIGNS = {
    "×": r"$\times$", "±": r"$\pm$", "µ": r"$\mu$", "μ": r"$\mu$", "–": "--", "—": "---", "·": r"$\cdot$",
    "≥": r"$\geq$", "≤": r"$\leq$", "≈": r"$\approx$", "†": r"\dag{}", "…": r"\ldots{}", "→": r"$\rightarrow$",
    "²": r"$^2$", "½": r"$\frac{1}{2}$", "°": r"$^\circ$", "‡": r"\ddag{}",
    "≠": r"$\neq$",
}


def latex_text(value: Any) -> str:
    """``value`` as LaTeX text: specials escaped, the report's signs as commands, other non-ASCII
    letters by their ASCII base (``é`` -> ``e``), anything else ``?``; the result is plain ASCII."""
    return "".join(_latex_char(ch) for ch in str(value))


def _latex_char(ch: str) -> str:
    if ch in LATEX_ESCAPES:
        return LATEX_ESCAPES[ch]
    if ch in LATEX_SIGNS:
        return LATEX_SIGNS[ch]
    if ch.isascii():
        return ch if ch.isprintable() else " "  # a newline or tab in a message: one space, as in report.md
    base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
    return latex_text(base) if base else "?"


def latex_table(frame: pd.DataFrame, caption: str, label: str, align: Sequence[str] | None = None) -> str:
    """A text DataFrame (index = the first column, ``model``) as a booktabs ``table``; ``align`` holds
    ``l``/``r`` per column (default: first left, others right)."""
    body = frame.reset_index()
    align = align or ["l", *["r"] * (len(body.columns) - 1)]
    styler = body.style.hide(axis="index").format(latex_text).format_index(latex_text, axis=1)
    latex = styler.to_latex(column_format="".join(align), hrules=True, caption=latex_text(caption), label=label,
                            position="htbp", position_float="centering")
    if natural_width(body) > COLUMN_CHARS:  # spans both columns of a two-column paper (one column: as `table`)
        latex = latex.replace("\\begin{table}", "\\begin{table*}").replace("\\end{table}", "\\end{table*}")
    return fit_to_column(latex)


COLUMN_CHARS = 70  # a little more than one column of a two-column paper holds at 10 pt; a wider table is a `table*`,
# since scaled into one column its figures would be too small to read


def natural_width(body: pd.DataFrame) -> int:
    """The characters of a table's widest line: each column as wide as its widest cell or header, two apart."""
    widths = [max([len(str(name)), *(len(str(v)) for v in body[name])]) for name in body.columns]
    return sum(widths) + 2 * (len(widths) - 1)


# A table wider than the text column is scaled down to \linewidth; a narrower one keeps its size (\width is
# the tabular's natural width inside \resizebox). pandas' Styler has no width control, hence the wrapper.
FIT_OPEN = "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{"


def fit_to_column(latex: str) -> str:
    """Each ``tabular`` of ``latex`` wrapped so that it never runs past ``\\linewidth``."""
    return latex.replace("\\begin{tabular}", FIT_OPEN + "\\begin{tabular}").replace("\\end{tabular}", "\\end{tabular}}")


def table_label(*parts: str) -> str:
    """``tab:speed-cpu-infer-fp32``: a \\label key of letters, digits and dashes."""
    return "tab:" + "-".join(re.sub(r"[^A-Za-z0-9]+", "-", part).strip("-") for part in parts)


def _key_label(data: ReportData, kind: str, key: TableKey) -> str:
    return table_label(data.study.name, kind, key.device, key.mode, key.dtype,
                       *([key.backend] if key.backend != "eager" else []))


def comment(text: str) -> str:
    """A LaTeX comment line: ``text`` as written (it is not typeset), its non-ASCII signs as in :func:`latex_text`."""
    return "% " + "".join(ch if ch.isascii() and ch.isprintable() else _latex_char(ch) for ch in text)


# ------------------------------------------------------------------------------------------ sections


def header(data: ReportData) -> list[str]:
    return [
        comment(f"{data.study.title}: the tables of report.md for a paper, written by archbench."),
        comment(f"Measured {pretty_date(data.date)}. Reproduce with: {data.command or 'archbench compare'}"),
        comment(r"Needs \usepackage{booktabs,graphicx} in the preamble; \input{report.tex} where the tables go (a table"),
        comment(r"wider than the column is scaled to \linewidth). The file is ASCII:"),
        comment(r"text is escaped and signs are LaTeX commands ($\times$, $\pm$, $\mu$, --, $\cdot$), so pdflatex needs "
                "nothing else."),
        comment("1 MAC = one multiply-accumulate = 2 FLOPs; MB = 2^20 bytes. See report.md for the methods and the "
                "environment."),
        "",
    ]


def architecture_tables(data: ReportData, notes: Footnotes) -> list[str]:
    arch = tables.architecture_text(data, notes)
    lines = [latex_table(arch, "Models: counts at each model's default input, batch 1 (MACs/FLOPs per sample; 1 MAC = "
                         "2 FLOPs). Parameter memory counts parameters and buffers; activation memory is what "
                         "autograd saves for the backward pass, measured.", table_label(data.study.name, "models"),
                         ["l", *["r"] * 7, "l"])]
    if tables.grid_differs_from_defaults(data):
        per_input = tables.macs_per_input_text(data, notes)
        lines.append(latex_table(per_input, "Forward MACs per sample at each input of the grid.",
                                 table_label(data.study.name, "macs-per-input")))
    return lines


def cell_tables(data: ReportData, notes: Footnotes) -> list[str]:
    """Speed, relative speed, peak memory and FLOP rate, a table per device, mode and dtype."""
    lines = []
    for key in tables.table_keys(data.rows):
        frame = tables.text_table(data, key, cells.time_cell, notes, flag_load=True)
        lines.append(latex_table(frame, f"Median time per step in ms, with its CI (95% unless stated); {key.title()}. "
                                        f"{cells.NOT_CONVERGED}: the time budget ran out before the CI met the "
                                        f"precision target; {cells.LOAD_MARK}: measured under load (see the notes).",
                                 _key_label(data, "speed", key)))
    for key, frame in relative.relative_tables(data):
        lines.append(latex_table(frame, f"Speed relative to {data.study.reference}: ×(reference time / time), > 1: "
                                        "faster; paired (interleaved rounds) where measured, else from the two "
                                        f"medians' CI ends; {key.title()}.", _key_label(data, "relative", key)))
    for key in tables.table_keys(data.rows):
        frame = tables.text_table(data, key, cells.throughput_cell, notes)
        lines.append(latex_table(frame, f"Throughput in samples/s (batch / median time); {key.title()}.",
                                 _key_label(data, "throughput", key)))
    for key, frame in tables.memory_tables(data, notes):
        lines.append(latex_table(frame, f"Peak memory per cell in MB; {key.title()}.", _key_label(data, "memory", key)))
    for key, frame in tables.efficiency_tables(data, notes):
        lines.append(latex_table(frame, "Achieved TFLOP/s (fraction of the device's measured peak); "
                                        f"{key.title()}.", _key_label(data, "flop-rate", key)))
    return lines


def notes_list(notes: Footnotes, data: ReportData) -> list[str]:
    load = cells.load_note(data.rows)
    if not notes.messages and not load:
        return []
    items = [f"\\item[{{[{number}]}}] {latex_text(message)}" for number, message in notes.items()]
    items += [f"\\item[{{{latex_text(cells.LOAD_MARK)}}}] {latex_text(load.removeprefix(cells.LOAD_MARK).strip())}"] if load else []
    return [comment("The notes marked [n] in the tables."), r"\begin{description}", *items, r"\end{description}", ""]


def render_latex(data: ReportData) -> str:
    """The tables of :func:`~archbench.report.markdown.render_markdown`, in its order, as LaTeX."""
    notes = Footnotes("plain")
    lines = [*header(data), *architecture_tables(data, notes), *cell_tables(data, notes), *notes_list(notes, data)]
    return "\n".join(lines).rstrip("\n") + "\n"


class LatexFormat:
    name = "latex"
    filename = LATEX_NAME

    def write(self, data: ReportData, out_dir: Path) -> list[Path]:
        return [atomic_write_text(Path(out_dir) / self.filename, render_latex(data))]
