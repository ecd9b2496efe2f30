"""``archbench diff BASE NEW``: a regression gate. Compares two runs cell by cell (archbench.diff.runs) and
prints the environment differences, then a table (or Markdown for a pull request, or JSON).

Exit codes: 1 when a cell regressed (slower by asv's rule, or failing where it ran in BASE) and the runs
are comparable; 0 otherwise — "not comparable" included, with a warning; 2 for bad input (unknown runs,
no cell in common, a file that is not archbench's). With ``--fail-on-env-change``, 3 instead of 0 when
something went unjudged for the environment's sake: the environments differ (without
``--allow-env-change``), or any cell was measured under load in either run. A regression among the cells
that were judged is still 1: it is real whatever happened to the others.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from archbench.cli._common import JsonOption, err, out, print_json
from archbench.cli.history import DbOption, db_path
from archbench.errors import PATH_ECHO_LIMIT, UsageError, quoted
from archbench.parsing import parse_fraction
from archbench.results.significance import DEFAULT_MIN_EFFECT

if TYPE_CHECKING:
    from archbench.diff.runs import DiffResult

_STYLES = {"slower": "red", "faster": "green", "unchanged": "", "noisy": "yellow", "not comparable": "magenta"}
EXIT_REGRESSED = 1
EXIT_NOT_COMPARABLE = 3


def diff_command(
    base: Annotated[str, typer.Argument(metavar="BASE", help="The run to compare against: a run id, latest, latest~N, a results CSV or a report folder.", show_default=False)],
    new: Annotated[str, typer.Argument(metavar="NEW", help="The run to check, in the same forms.", show_default=False)],
    min_effect: Annotated[str, typer.Option("--min-effect", metavar="FRACTION", help="Smallest change that counts: a change is called only when its whole 95% CI lies beyond ±this.")] = str(DEFAULT_MIN_EFFECT),
    allow_env_change: Annotated[bool, typer.Option("--allow-env-change", help="Compare even when torch, the device, threads, CUDA or the driver differ.")] = False,
    fail_on_env_change: Annotated[bool, typer.Option("--fail-on-env-change", help="Exit 3 when the runs are not comparable: the environments differ, or a cell was measured under load in either run.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown (for a pull request comment) instead of a table.")] = False,
    json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Compare run NEW against run BASE cell by cell: time ratio with its CI, Mann-Whitney U (Holm-corrected),
    and a verdict per cell. Exit 1 when a cell regressed (3 with --fail-on-env-change when not comparable)."""
    effect = parse_fraction(min_effect, "--min-effect")
    if markdown and json:
        raise UsageError("--markdown and --json both print the diff: give one of them.")
    store_path = _checked_db_path(db)

    from archbench.cli.profile import diff_profile_runs  # two profiles are compared module by module

    if diff_profile_runs(base, new, store_path, effect, allow_env_change, markdown, json):
        return
    from archbench.diff.runs import diff_runs, diff_to_json, load_run_data

    runs = load_run_data(base, store_path), load_run_data(new, store_path)
    warned = tuple(dict.fromkeys(warning for run in runs for warning in run.warnings))
    for warning in warned:  # what was wrong with a file read (an unreadable env.json...), whatever the format
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    result = diff_runs(*runs, min_effect=effect, allow_env_change=allow_env_change)
    if json:
        print_json(diff_to_json(result))
    elif markdown:
        from archbench.report.diff_markdown import diff_markdown

        sys.stdout.write(diff_markdown(result))
        sys.stdout.flush()
    else:
        _print_result(result, warned)
    code = exit_code(result, fail_on_env_change)
    _print_outcome(result, code)
    if code:
        raise typer.Exit(code)


def exit_code(result: DiffResult, fail_on_env_change: bool) -> int:
    """1 for a regression; 3 with ``fail_on_env_change`` for a diff that left cells unjudged because of the
    environment (differences, or cells measured under load); else 0."""
    if result.outcome == "regressed":
        return EXIT_REGRESSED
    return EXIT_NOT_COMPARABLE if fail_on_env_change and not result.fully_compared else 0


def _checked_db_path(text: str | None) -> Path:
    """The store run ids refer to, checked before anything is read (a bad ``--db`` is an error even when
    BASE and NEW are files): not a folder, not below a file."""
    path = db_path(text)
    if text is None:
        return path
    if path.is_dir():
        raise UsageError(f"--db {quoted(text, PATH_ECHO_LIMIT)} is a folder, not a database file: give a results store such as reports/archbench.db.")
    if any(parent.is_file() for parent in path.parents):
        raise UsageError(f"--db {quoted(text, PATH_ECHO_LIMIT)} lies below a file, so it cannot exist: give the path of a results store.")
    return path


# ------------------------------------------------------------------------------------------- output


def _print_result(result: DiffResult, warned: tuple[str, ...] = ()) -> None:
    from archbench.report.diff_markdown import (
        cells_by_verdict,
        ci_text,
        p_text,
        percent,
        set_aside,
        summary_line,
        verdict_text,
    )
    from archbench.units import fmt_ms

    if result.env_differences:
        _print_env_differences(result)
    confidence = f"{result.confidence * 100:g}%"
    out.print(f"{escape(result.base_label)} → {escape(result.new_label)}: time new/base per cell")
    from archbench.fitted import Column, fitted_table

    columns = [Column("cell", text=True), Column("base ms", "right", drop=2), Column("new ms", "right", drop=2),
               Column("change", "right"), Column(f"{confidence} CI", "right"), Column("p (Holm)", "right", drop=1),
               Column("verdict", text=True)]
    cells = cells_by_verdict(result)
    body = [[escape(cell.key.label()), fmt_ms(cell.base_median_ms), fmt_ms(cell.new_median_ms), percent(cell.ratio),
             ci_text(cell, result.confidence), p_text(cell.p_holm), verdict_text(cell)] for cell in cells]
    table = fitted_table(columns, body, out.width)
    for row_index, cell in enumerate(cells):
        table.rows[row_index].style = _STYLES[cell.verdict]
    out.print(table)
    for cell in set_aside(result):
        out.print(f"not judged: {escape(cell.key.label())}: {verdict_text(cell)}: {escape(cell.reason)}")
    _print_lists(result, warned)
    out.print(summary_line(result))


def _print_env_differences(result: DiffResult) -> None:
    note = "compared anyway (--allow-env-change)" if result.comparable else "the runs are not comparable"
    out.print(f"Environment differences: {note}")
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("", "base", "new"):
        table.add_column(name)
    for difference in result.env_differences:
        table.add_row(escape(difference.name), escape(difference.base), escape(difference.new))
    out.print(table)


def _print_lists(result: DiffResult, warned: tuple[str, ...] = ()) -> None:
    from archbench.report.diff_markdown import count_text, rule_text
    for failed in result.failed:
        mark = " [red]✗ regression[/]" if failed.newly_failed else ""
        why = f": {escape(failed.error)}" if failed.error else ""
        out.print(f"failed: {escape(failed.key.label())}: {failed.base_status} → {failed.new_status}{why}{mark}")
    for side, keys in (("base", result.only_in_base), ("new run", result.only_in_new)):
        for key in keys:
            out.print(f"only in the {side}: {escape(key.label())}")
    for change in result.count_changes:
        out.print(f"count changed: {escape(change.what)} {change.name}: {count_text(change.base)} → {count_text(change.new)}")
    for note in result.notes:
        if note not in warned:  # said on stderr already
            out.print(f"note: {escape(note)}")
    out.print(escape(rule_text(result)))


def _print_outcome(result: DiffResult, code: int) -> None:
    because = {0: " (exit 0; --fail-on-env-change makes it exit 3)", EXIT_NOT_COMPARABLE: " (exit 3)"}.get(code, "")
    if not result.comparable:
        names = ", ".join(d.name for d in result.env_differences)
        err.print(f"[yellow]warning:[/] the environments differ ({escape(names)}): the runs are not comparable and no "
                  f"cell is called a regression{because}. Pass --allow-env-change to compare them anyway.")
        return
    if result.not_comparable:
        err.print(f"[yellow]warning:[/] {len(result.not_comparable)} of {len(result.cells)} cell(s) were measured under "
                  f"load in either run: not comparable, never called slower or faster{because}. Measure them "
                  "again on a quiet machine.")
    if result.outcome == "regressed":
        failing = f", {len(result.newly_failed)} failing that ran in the base" if result.newly_failed else ""
        err.print(f"[red]regressed:[/] {len(result.slower)} cell(s) slower{failing} (exit 1).")
