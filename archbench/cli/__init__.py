"""The command-line interface: parse options, call the library, render with rich, map errors to exit
codes. The only package that prints. Nothing here imports torch at module level, so ``--help``,
``list --source specs`` and argument errors stay fast.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import typer
from rich.markup import escape

from archbench.cli import bench, catalog, collect, compare, diff, history, memory, profile, run_cells, summary
from archbench.cli._common import err
from archbench.errors import ArchbenchError
from archbench.interrupts import sigterm_as_interrupt
from archbench.version import __version__

app = typer.Typer(
    name="archbench",
    help="What a vision architecture costs: parameters, MACs/FLOPs, memory and forward/backward speed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False, "terminated": False}


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
app.command("memory")(memory.memory_command)
app.command("bench")(bench.bench_command)
app.command("compare")(compare.compare_command)
app.command("report")(compare.report_command)
app.command("diff")(diff.diff_command)
app.command("profile")(profile.profile_command)
app.command("history")(history.history_command)
app.command("collect")(collect.collect_command)
app.command("run-cells", hidden=True)(run_cells.run_cells_command)


# typer 0.29 vendors click (``typer._click``) and does not install it; older typer used click itself.
# Find click's base exception through typer's public BadParameter instead of importing click.
_CLICK_EXCEPTION = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)


@functools.cache
def _command():
    """The click command typer makes of :data:`app`, made once per process: making it reads every command's
    signature and type hints (~0.1 s), which a program calling :func:`main` many times paid on every call."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one error base class -> one short message and exit code.

    Exit codes: 0 ok, 1 a check failed or every cell of a run failed, 2 bad input (usage errors
    included), 130 Ctrl-C, 143 SIGTERM. SIGTERM stops a run as Ctrl-C does: finished cells are kept and
    the command that resumes it is printed."""
    _state["terminated"] = False
    _quiet_third_party_notices(sys.argv[1:] if argv is None else argv)
    try:
        with sigterm_as_interrupt(on_signal=lambda: _state.update(terminated=True)):
            code = _command()(args=argv, prog_name="archbench", standalone_mode=False)  # returns typer.Exit's code
    except ArchbenchError as exc:
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/] {escape(exc.for_cli())}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        err.print("terminated (SIGTERM)." if _state["terminated"] else "interrupted.")
        sys.exit(_interrupted_exit_code())
    except typer.Exit as exc:  # --help, --version, explicit exits
        code = exc.exit_code
    except typer.Abort:
        err.print("aborted.")
        sys.exit(EXIT_INTERRUPTED)
    except _CLICK_EXCEPTION as exc:  # usage errors: unknown option, missing argument, bad choice ...
        exc.show()  # click's own rendering: usage line, --help hint, error line
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(_interrupted_exit_code() if code == EXIT_INTERRUPTED else code)


# Notices other libraries log while a model is built or compiled, which say nothing about the model and would
# split the progress lines (torch's inductor, on a CPU-only machine: "No CUDA runtime is found, using
# CUDA_HOME=..."). Errors still show; --debug shows everything.
_QUIET_LOGGERS = ("torch.utils.cpp_extension",)


def _quiet_third_party_notices(argv: list[str]) -> None:
    if "--debug" not in argv and not os.environ.get("ARCHBENCH_DEBUG"):
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def _interrupted_exit_code() -> int:
    return EXIT_TERMINATED if _state["terminated"] else EXIT_INTERRUPTED
