"""The command-line interface: parse options, call the library, render with rich, map errors to exit
codes. The only package that prints. Nothing here imports torch at module level, so ``--help``,
``list --source specs`` and argument errors stay fast.
"""

from __future__ import annotations

import os
import sys

import typer

from archbench import __version__
from archbench.cli import bench, catalog, compare, summary
from rich.markup import escape

from archbench.cli._common import err
from archbench.errors import ArchbenchError

app = typer.Typer(
    name="archbench",
    help="What a vision architecture costs: parameters, MACs/FLOPs, memory and forward/backward speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"archbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["debug"] = debug or bool(os.environ.get("ARCHBENCH_DEBUG"))


app.command("list")(catalog.list_command)
app.command("check")(catalog.check_command)
app.command("summary")(summary.summary_command)
app.command("bench")(bench.bench_command)
app.command("compare")(compare.compare_command)
app.command("report")(compare.report_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one error base class -> one short message and exit code."""
    try:
        code = app(args=argv, standalone_mode=False)  # non-standalone click returns typer.Exit's code
        if isinstance(code, int) and code:
            sys.exit(code)
    except ArchbenchError as exc:
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        err.print("interrupted.")
        sys.exit(130)
    except typer.Exit as exc:  # --help, --version, explicit exits
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted.")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
