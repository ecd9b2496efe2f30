"""What every command shares: the consoles, option types and small renderers (no torch import)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from archbench.errors import UsageError, quoted

# Data (tables, JSON) goes to stdout; progress, summaries and errors to stderr.
# Piped output gets a wide console (rich assumes 80 columns) so tables are not wrapped cell by cell.
_PIPE_WIDTH = int(os.environ.get("COLUMNS", "160"))
out = Console(highlight=False, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else _PIPE_WIDTH)

def _non_empty(values: list[str] | None) -> list[str] | None:
    """An empty --specs would silently mean the current directory."""
    if values and any(not v.strip() for v in values):
        raise typer.BadParameter("empty: give a directory of spec files, e.g. --specs ./specs.")
    return values


SpecsOption = Annotated[
    list[str] | None,
    typer.Option("--specs", metavar="DIR", callback=_non_empty,
                 help="Extra directory of spec files (repeatable; also ARCHBENCH_SPECS).", show_default=False),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Override a builder argument: key=value, value a TOML literal (repeatable).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON to stdout.")]
QuickOption = Annotated[bool, typer.Option("--quick", help="A first look: ±10% and 1 s per cell (--precision 0.1 --max-time 1), not a result to cite; explicit --precision/--max-time win.")]


def quick_defaults(quick: bool, precision: str | None, max_time: str | None) -> tuple[str, str]:
    """--precision and --max-time as given, else the --quick preset's or the defaults (as text, as typed)."""
    from archbench.sweep.plan import QUICK
    from archbench.timing.options import MeasureOptions

    preset = QUICK if quick else MeasureOptions()
    return (precision if precision is not None else f"{preset.precision:g}",
            max_time if max_time is not None else f"{preset.max_time_s:g}")


def measure_options(precision: str | None, max_time: str | None, base: Any = None) -> Any:
    """The one :class:`~archbench.timing.options.MeasureOptions` of a run: ``base`` (the defaults, or a study's)
    with --precision and --max-time as given; a value it refuses is that option's error."""
    import dataclasses

    from archbench.arguments import ArgumentError
    from archbench.parsing import parse_number, parse_seconds
    from archbench.timing.options import MeasureOptions

    given = {"precision": ("--precision", precision), "max_time_s": ("--max-time", max_time)}
    changes = {"precision": parse_number(precision, "--precision")} if precision is not None else {}
    if max_time is not None:
        changes["max_time_s"] = parse_seconds(max_time, "--max-time")
    try:
        return dataclasses.replace(base if base is not None else MeasureOptions(), **changes)
    except ArgumentError as exc:
        option, text = given.get(exc.argument, (exc.argument, ""))
        raise UsageError(f"{option} {quoted(str(text).strip())} is not {exc.expected}.") from None


def out_path(text: str | None, option: str) -> Path | None:
    """An output path option (an empty value would silently mean the working directory)."""
    if text is not None and not text.strip():
        raise UsageError(f"{option} is empty: give a path, or leave the option out for the default.")
    return Path(text) if text is not None else None


def print_json(data: Any) -> None:
    """JSON to stdout, unwrapped and uncoloured (safe to pipe)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def model_options(no_interleave: bool, sets, model_inputs: str | None, specs) -> list[str]:
    """The options of a reproduce/resume command line that say how the models are built and measured."""
    parts = ["--no-interleave"] if no_interleave else []
    for item in sets or ():
        parts += ["--set", item]
    parts += ["--inputs", model_inputs] if model_inputs is not None else []
    for directory in specs or ():
        parts += ["--specs", directory]
    return parts
