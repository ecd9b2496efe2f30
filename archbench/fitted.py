"""Tables that fit the terminal: the one way to build a rich table for a given width (the CLI, the summary).

rich shrinks a table that is too wide by cutting cells (``1,2…``) — a number cut mid-way is worse than no
number. So each column says how dispensable it is (``drop``: 0 = always shown, higher = dropped sooner),
the table is measured at its natural width (rich's ``Measurement``), and columns are dropped, most
dispensable first, until it fits; long names (model references, commands) are shortened in the middle
(``./examples/…/mynet.py:MyNet``) rather than cut at the end, and free text may fold onto more lines.
Numbers never wrap and are never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

ELLIPSIS = "…"


@dataclass(frozen=True)
class Column:
    name: str
    justify: str = "left"
    drop: int = 0  # 0: always shown; columns with higher values are dropped first when the table is too wide
    text: bool = False  # free text: may fold onto several lines (a number column never does)
    shorten: int = 0  # a name shortened in the middle to this many characters when the table is too wide


def shorten_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, its middle replaced by ``…`` (both ends kept: a reference's
    folder and its ``file.py:Class``)."""
    if width <= 0 or len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + ELLIPSIS + text[len(text) - (width - 1 - head):]


def _table(columns: Sequence[Column], rows: Sequence[Sequence[str]], shortened: bool, **kwargs) -> Table:
    table = Table(box=kwargs.pop("box", box.SIMPLE_HEAD), pad_edge=False, **kwargs)
    for column in columns:
        table.add_column(column.name, justify=column.justify, no_wrap=not column.text,
                         overflow="fold" if column.text else "ellipsis")
    for row in rows:
        table.add_row(*(shorten_middle(cell, column.shorten) if shortened and column.shorten else cell
                        for column, cell in zip(columns, row)))
    return table


def natural_width(table: Table, console: Console) -> int:
    """The width ``table`` takes with no cell folded or cut."""
    return Measurement.get(console, console.options.update(width=10_000), table).maximum


def fits(table: Table, width: int) -> bool:
    """Whether ``table`` shows whole within ``width`` columns."""
    return natural_width(table, Console(width=width)) <= width


def fitted_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int, **kwargs) -> Table:
    """A table of ``rows`` (one text per column) that fits ``width`` columns: all columns if they fit, else
    with long names shortened, then with the most dispensable columns dropped, level by level; if even the
    essential columns are too wide, free text folds onto more lines (rich does that within ``width``)."""
    candidates = [(list(range(len(columns))), False), (list(range(len(columns))), True)]
    kept = list(range(len(columns)))
    for level in sorted({c.drop for c in columns if c.drop > 0}, reverse=True):
        kept = [i for i in kept if columns[i].drop != level]
        candidates.append((kept, True))
    for kept, shortened in candidates:
        table = _table([columns[i] for i in kept], [[row[i] for i in kept] for row in rows], shortened, **kwargs)
        if fits(table, width):
            return table
    return table
