"""``--backend`` and ``--compile-mode`` (bench, compare), and bench's speed-up vs eager table (no torch import)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from archbench.cli._common import err, out
from archbench.errors import UsageError, quoted
from archbench.rows import BACKENDS, COMPILE_MODES

BackendOption = Annotated[str | None, typer.Option(
    "--backend", metavar="BACKENDS", show_default=False,
    help=f"How the model runs, comma-separated (a grid axis): {', '.join(BACKENDS)} [default: eager]. Non-eager "
         "outputs are checked against eager's.")]
CompileModeOption = Annotated[str | None, typer.Option(
    "--compile-mode", metavar="MODE", show_default=False,
    help=f"torch.compile's mode for --backend compile: {', '.join(COMPILE_MODES)} [default: default].")]


def parse_backends(text: str | None, compile_flag: bool, compile_mode: str | None) -> tuple[str, ...]:
    """The backends a command runs: ``--backend`` (``--compile`` adds ``compile``), ``compile`` in
    ``--compile-mode``; eager alone by default."""
    from archbench.timing.backends import check_backends, with_compile_mode

    labels = [] if text is None else [item for item in text.split(",")]
    if text is not None and not any(item.strip() for item in labels):
        raise UsageError("--backend is empty: give one or more of " + ", ".join(BACKENDS) + ".")
    labels = [item for item in labels if item.strip()]
    if compile_flag:
        labels.append("compile")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise UsageError(f"--compile-mode {quoted(compile_mode)} is not one of: {', '.join(COMPILE_MODES)}.")
    backends = check_backends(labels or ["eager"], "--backend")
    if compile_mode not in (None, "default") and "compile" not in backends:
        raise UsageError("--compile-mode applies to the compile backend: add --backend compile (or drop --compile-mode).")
    return with_compile_mode(backends, compile_mode)


def print_backend_comparisons(rows) -> None:
    """bench's table of each non-eager cell against eager (nothing when every row is eager)."""
    from archbench.fitted import Column, fitted_table
    from archbench.report.backends import COMPARISON_HEADERS, backend_comparisons, comparison_cells

    found = backend_comparisons(rows)
    if not found:
        return
    # The cell and status fold; the error columns, then the build time, go first on a narrow terminal.
    how = {"model": Column("model", shorten=24), "cell": Column("cell", text=True),
           "speed-up vs eager": Column("speed-up vs eager", "right"), "build s": Column("build s", "right", drop=2),
           "max abs err": Column("max abs err", "right", drop=1), "max rel err": Column("max rel err", "right", drop=1),
           "status": Column("status", text=True)}
    columns = [how.get(header, Column(header)) for header in COMPARISON_HEADERS]
    body = []
    for item in found:
        cells = [escape(c) for c in comparison_cells(item, with_reason=False)]  # the reasons follow the table
        cells[-1] = cells[-1].replace("**numerics**", "[yellow]numerics[/]")
        body.append(cells)
    shared = _drop_shared_cell_parts(body, COMPARISON_HEADERS.index("cell"))
    table = fitted_table(columns, body, out.width, title=" · ".join(["speed-up vs eager", *shared]) + " (unpaired CI "
                         "from the two cells' CI ends; build s outside the samples)", title_justify="left")
    out.print(table)
    for item in found:
        if item.numerics:
            err.print(f"[yellow]warning:[/] {escape(item.row.model)} {escape(item.row.backend)} batch {item.row.batch}: "
                      f"{escape(item.numerics)}")


def _drop_shared_cell_parts(body: list[list[str]], index: int) -> list[str]:
    """Take the parts every row's cell shares (``infer``, ``cpu``, ``fp32`` …) out of the cell column (the batch always
    stays), in place; return them for the title, as bench's own table does."""
    parts = [cells[index].split(" · ") for cells in body]
    shared = [part for part in parts[0] if all(part in other for other in parts) and not _is_batch(part)]
    for cells, own in zip(body, parts):
        cells[index] = " · ".join(part for part in own if part not in shared) or "—"
    return shared


def _is_batch(part: str) -> bool:
    """``b8``: the batch stays in the cell column, so a cell is never empty."""
    return part.startswith("b") and part[1:].isdigit()
