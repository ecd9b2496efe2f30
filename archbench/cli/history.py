"""``archbench history``: the runs recorded in the results store; and the store options every recording
command shares (``--db``, ``--no-db``): which store, opened before anything is measured, and the line
saying where the run was stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from archbench.cli._common import JsonOption, err, out, print_json
from archbench.errors import PATH_ECHO_LIMIT, StoreError, UsageError, quoted

if TYPE_CHECKING:
    from archbench.results.store import RunInfo, Store

DbOption = Annotated[
    str | None,
    typer.Option("--db", metavar="FILE.db", show_default=False,
                 help="Results store (SQLite) [default: $ARCHBENCH_DB, else reports/archbench.db]."),
]
NoDbOption = Annotated[bool, typer.Option("--no-db", help="Do not record this run in the results store.")]
_RECORD_HINT = "(--db FILE.db records into another store; --no-db runs without one.)"
DEFAULT_LIMIT = 20


def db_path(text: str | None) -> Path:
    """The store ``--db`` names, else ``$ARCHBENCH_DB``, else ``reports/archbench.db``."""
    from archbench.results.store import default_db_path

    if text is None:
        return default_db_path()
    if not text.strip():
        raise UsageError("--db is empty: give a database file such as reports/archbench.db, or leave the option out "
                         "for the default.")
    from archbench.locations import shape_problem

    if reason := shape_problem(Path(text)):  # checked once here: a name too long would escape every is_file()
        raise UsageError(f"--db: cannot use {quoted(text, PATH_ECHO_LIMIT)} as a results store: {reason}.")
    return Path(text)


def open_recording_store(db: str | None, no_db: bool) -> Store | None:
    """The store a run records into, opened (created) before anything is measured: None with ``--no-db``,
    or — with a warning — when its location cannot be written. A file that is not a usable store is an error."""
    if no_db:
        if db is not None:
            raise UsageError("--db and --no-db contradict each other: give one of them.")
        return None
    from archbench.results.store import Store

    try:
        store, warning = Store.open_or_warn(db_path(db))
    except StoreError as exc:
        raise type(exc)(f"{exc} {_RECORD_HINT}") from None
    if warning:
        err.print(f"[yellow]warning:[/] {escape(warning)} {escape(_RECORD_HINT)}", soft_wrap=True)
    return store


def print_stored(store: Store, run_id: int | None) -> None:
    if run_id is not None:
        err.print(f"stored as run {run_id} in {escape(str(store.path))}", soft_wrap=True)  # a path in one piece


# ------------------------------------------------------------------------------------------ history


def history_command(
    model: Annotated[str | None, typer.Argument(metavar="MODEL", show_default=False,
                                                help="Only the runs that measured this model.")] = None,
    device: Annotated[str | None, typer.Option("--device", metavar="DEVICE", show_default=False,
                                               help="Only the runs that measured on this device: cpu, cuda or cuda:N.")] = None,
    db: DbOption = None,
    json: JsonOption = False,
    limit: Annotated[str, typer.Option("--limit", metavar="N", help="Show at most N runs, newest first.")] = str(DEFAULT_LIMIT),
) -> None:
    """The runs recorded in the results store, newest first: id, date, command, models, devices, cells ok and
    failed, git commit and torch version. Every bench and compare run is recorded there."""
    from archbench.parsing import parse_device

    count = _positive_int(limit, "--limit")
    device_name = parse_device(device) if device is not None else None
    if model is not None and not model.strip():
        raise UsageError("MODEL is empty: name a model, or leave it out to list every run.")

    from archbench.results.store import Store

    with Store.open(db_path(db), readonly=True) as store:
        if model is not None and model not in (known := store.models()):
            shown = ", ".join(known) if known else "none yet"
            raise StoreError(f"no run in {quoted(store.path, PATH_ECHO_LIMIT)} measured {quoted(model)}. Models in the store: {shown}.")
        runs = store.runs(model=model, device=device_name, limit=count)
    if json:
        print_json([r.to_json() for r in runs])
        return
    out.print(history_table(runs, store.path))
    if not runs:
        err.print("no stored run matches.")


def _positive_int(text: str, option: str) -> int:
    from archbench.parsing import parse_int

    return parse_int(text, option, example=f"{option} 20")


_STATE_MARKS = {"running": "*", "unknown": "*", "interrupted": "†"}
_STATE_NOTES = {
    "*": "* unfinished: still running (or running on another host, where its process cannot be looked up)",
    "†": "† interrupted: its process is gone (killed or crashed); its finished cells are kept. Run its command "
         "again with --resume to finish it",
}


def history_table(runs: list[RunInfo], path: Path, width: int | None = None) -> Table:
    """The runs, fitted to ``width`` (default stdout's): git, torch, devices and models give way first, and a
    long command is shortened in the middle rather than wrapped mid-token."""
    from archbench.fitted import Column, fitted_table

    marks = dict.fromkeys(_STATE_MARKS.get(r.state, "") for r in runs if r.finished_utc is None)
    caption = "\n".join(_STATE_NOTES[m] for m in _STATE_NOTES if m in marks) or None
    width = width or out.width
    columns = [Column("id", "right"), Column("started (UTC)"), Column("command", shorten=max(24, width - 52), text=True),
               Column("models", drop=2, text=True), Column("devices", drop=3), Column("cells"), Column("git", drop=4),
               Column("torch", drop=5)]
    body = []
    for r in runs:
        started = r.started_utc[:16].replace("T", " ") + (_STATE_MARKS.get(r.state, "") if r.finished_utc is None else "")
        body.append([str(r.id), started, escape(_what(r)), escape(", ".join(r.models)), ", ".join(r.devices),
                     _cells(r), escape(_short_commit(r.git_commit)), escape(str(r.torch_version or "—"))])
    return fitted_table(columns, body, width, title=f"archbench history: {len(runs)} run(s) in {escape(str(path))}",
                        title_justify="left", caption_justify="left", caption=caption)


def _what(run: RunInfo) -> str:
    command = run.command.removeprefix("archbench ")
    return f"{run.title}: {command}" if run.title else command


def _cells(run: RunInfo) -> str:
    text = f"{run.n_ok} ok" + (f", [red]{run.n_failed} failed[/]" if run.n_failed else "")
    return text + (f" (of {run.planned_cells})" if run.n_cells < run.planned_cells else "")


def _short_commit(commit: str | None) -> str:
    if not commit:
        return "—"
    head, dirty, _ = commit.partition("+")
    return head[:10] + ("+dirty" if dirty else "")
