"""``archbench run-cells FILE`` (hidden, advanced): measure the cells of a work unit in this process.

What every out-of-process executor runs (a local worker, a Slurm job): the rows, raw samples, environment
and device peaks go to the unit's shard (``NAME.shard.jsonl`` beside ``NAME.unit.json``), one fsynced JSON
line per finished cell; cells the shard already holds are skipped. Exit 0 once every cell has a row (failed
cells are rows too), 130/143 when stopped (the finished cells stay in the shard).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from archbench.cli._common import err


def run_cells_command(
    unit: Annotated[str, typer.Argument(metavar="UNIT.json", show_default=False,
                                        help="A work unit written by one of archbench's executors.")],
) -> None:
    """Measure the cells of a work unit in this process and append them to its shard (used by --workers and
    --executor slurm)."""
    from archbench.errors import WorkUnitError
    from archbench.execute.worker import run_work_unit
    from archbench.execute.workunits import shard_path

    if not unit.strip():
        raise WorkUnitError("UNIT.json is empty: give the work unit file an executor wrote.")
    contents = run_work_unit(unit)
    err.print(f"{len(contents.rows)} cell(s) in {escape(str(shard_path(unit)))}", soft_wrap=True)
    if contents.interrupted:
        raise typer.Exit(130)
