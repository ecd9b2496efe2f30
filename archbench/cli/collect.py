"""``archbench collect RUN``: gather what the Slurm jobs of a detached run have finished; and the executor
options every measuring command shares (``--executor``, ``--workers``, the Slurm options, ``--detach``),
turned into :class:`~archbench.execute.executors.ExecutorSettings` over a study file's ``[executor]`` table.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.markup import escape

from archbench.cli._common import err
from archbench.cli.history import DbOption, db_path
from archbench.errors import UsageError, quoted

ExecutorOption = Annotated[str | None, typer.Option("--executor", metavar="local|slurm", show_default=False, help=(
    "Where the cells are measured: local (this machine) or slurm (one job per model, through submitit) [default: "
    "the study's, else local]."))]
WorkersOption = Annotated[str | None, typer.Option("--workers", metavar="N|auto", show_default=False, help=(
    "Local worker processes, each pinned to its own cores (threads = cores per worker) or GPU; auto: one per GPU "
    "(CPU cells: one per core) [default: measure in this process]."))]
PartitionOption = Annotated[str | None, typer.Option("--partition", metavar="NAME", show_default=False, help=(
    "Slurm partition of the jobs."))]
GpusOption = Annotated[str | None, typer.Option("--gpus-per-job", metavar="N", show_default=False, help=(
    "GPUs each Slurm job asks for (CUDA cells)."))]
ConstraintOption = Annotated[str | None, typer.Option("--constraint", metavar="FEATURES", show_default=False, help=(
    "Slurm node features, e.g. a100 (sbatch --constraint)."))]
TimeLimitOption = Annotated[str | None, typer.Option("--time-limit", metavar="MINUTES", show_default=False, help=(
    "Time limit of each Slurm job in minutes [default: 30]."))]
AccountOption = Annotated[str | None, typer.Option("--account", metavar="NAME", show_default=False, help="Slurm account to charge.")]
QosOption = Annotated[str | None, typer.Option("--qos", metavar="NAME", show_default=False, help="Slurm quality of service.")]
SbatchOption = Annotated[list[str] | None, typer.Option("--sbatch", metavar="KEY=VALUE", show_default=False, help=(
    "Any other sbatch option, as --KEY=VALUE (repeatable), e.g. --sbatch mem=32G."))]
SharedNodeOption = Annotated[bool, typer.Option("--no-exclusive", help=(
    "Let Slurm jobs share a node (by default each job has its node to itself, so CPU timings are not disturbed)."))]
DetachOption = Annotated[bool, typer.Option("--detach", help=(
    "Submit the Slurm jobs, record the run and exit; `archbench collect RUN` gathers the results."))]


def executor_settings(study_table: Mapping[str, Any] | None, *, executor: str | None, workers: str | None,
                      partition: str | None, gpus_per_job: str | None, constraint: str | None, time_limit: str | None,
                      account: str | None, qos: str | None, sbatch: list[str] | None, no_exclusive: bool, detach: bool,
                      targets: Mapping[str, Mapping[str, Any]] | None = None):
    """The executor settings: the study's ``[executor]`` table (already validated), then the options given."""
    from archbench.execute.executors import settings_from_table
    from archbench.parsing import parse_positive_ints
    from archbench.study import EXECUTORS

    base = settings_from_table(study_table or {}, targets or {})
    given_kind = _choice(executor, "--executor", EXECUTORS)
    slurm_given = {name: value for name, value in (("--partition", partition), ("--gpus-per-job", gpus_per_job),
                                                   ("--constraint", constraint), ("--time-limit", time_limit),
                                                   ("--account", account), ("--qos", qos), ("--sbatch", sbatch),
                                                   ("--no-exclusive", no_exclusive or None), ("--detach", detach or None))
                   if value is not None}
    kind = given_kind or base.kind
    if slurm_given and kind != "slurm":
        raise UsageError(f"{', '.join(slurm_given)} {'applies' if len(slurm_given) == 1 else 'apply'} to Slurm jobs: add "
                         "--executor slurm (or set kind = \"slurm\" in the study's [executor] table).")
    if workers is not None and kind == "slurm":
        raise UsageError("--workers spreads cells over processes of this machine; with --executor slurm each model is "
                         "a job of its own: leave --workers out.")
    changes: dict[str, Any] = {}
    for option, name, value in (("--partition", "partition", partition), ("--constraint", "constraint", constraint),
                                ("--account", "account", account), ("--qos", "qos", qos)):
        if value is not None:
            if not value.strip() or any(c.isspace() for c in value.strip()):
                raise UsageError(f"{option} {quoted(value)}: expected a Slurm name without spaces.")
            changes[name] = value.strip()
    if gpus_per_job is not None:
        changes["gpus_per_job"] = _one_int(gpus_per_job, "--gpus-per-job", parse_positive_ints)
    if time_limit is not None:
        changes["time_limit_min"] = _one_int(time_limit, "--time-limit", parse_positive_ints)
    if no_exclusive:
        changes["exclusive"] = False
    if sbatch:
        changes["sbatch"] = (*base.slurm.sbatch, *(_sbatch_pair(item) for item in sbatch))
    import dataclasses

    settings = dataclasses.replace(base, kind=kind, slurm=dataclasses.replace(base.slurm, **changes),
                                   detach=detach or base.detach)
    if workers is not None:
        settings = dataclasses.replace(settings, workers=parse_workers(workers))
    if settings.targets and changes:  # options from the command line apply to every target
        settings = dataclasses.replace(settings, targets={name: dataclasses.replace(t, **changes)
                                                          for name, t in settings.targets.items()})
    if settings.kind == "local" and (settings.detach or settings.targets):
        raise UsageError("targets and --detach run as Slurm jobs: add --executor slurm.")
    if settings.kind == "local" and base.kind == "slurm" and given_kind == "local" and settings.targets:
        raise UsageError("the study names targets, which run as Slurm jobs: leave --executor local out.")
    return settings


def parse_workers(text: str) -> int | str:
    """``--workers``: a positive number or ``auto``."""
    from archbench.parsing import parse_positive_ints

    if text.strip().lower() == "auto":
        return "auto"
    return _one_int(text, "--workers", parse_positive_ints, "or auto")


def _one_int(text: str, option: str, parse, alternative: str = "") -> int:
    values = parse(text, option)
    if len(values) != 1:
        raise UsageError(f"{option} {quoted(text)}: give one positive integer{' ' + alternative if alternative else ''}.")
    return values[0]


def _choice(value: str | None, option: str, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value.strip() not in choices:
        raise UsageError(f"{option} {quoted(value)} is not one of: {', '.join(choices)}.")
    return value.strip()


def _sbatch_pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key or not value.strip() or any(c.isspace() for c in key):
        raise UsageError(f"--sbatch {quoted(item)}: expected KEY=VALUE, an sbatch option without its dashes, e.g. --sbatch mem=32G.")
    return key, value.strip()


def executor_command_args(executor: str | None, workers: str | None, partition: str | None, gpus_per_job: str | None,
                          constraint: str | None, time_limit: str | None, account: str | None, qos: str | None,
                          sbatch: list[str] | None, no_exclusive: bool) -> list[str]:
    """The executor options as given, for the command line that reproduces (or resumes) a run."""
    parts: list[str] = []
    for option, value in (("--executor", executor), ("--workers", workers), ("--partition", partition),
                          ("--gpus-per-job", gpus_per_job), ("--constraint", constraint), ("--time-limit", time_limit),
                          ("--account", account), ("--qos", qos)):
        parts += [option, value] if value is not None else []
    for item in sbatch or ():
        parts += ["--sbatch", item]
    return parts + (["--no-exclusive"] if no_exclusive else [])


def print_detached(run_id: int | None, jobs: tuple[str, ...], planned: int, db_option: str | None) -> None:
    """What a detached run says: the jobs it submitted and the command that collects them."""
    where = f" --db {shlex.quote(db_option)}" if db_option is not None else ""
    err.print(f"submitted {len(jobs)} Slurm job(s) for {planned} cell(s): {', '.join(jobs)}", soft_wrap=True)
    if run_id is not None:
        err.print(f"run {run_id}: gather the results with  archbench collect {run_id}{escape(where)}", soft_wrap=True)
        typer.echo(run_id)


# ------------------------------------------------------------------------------------------- collect


def collect_command(
    run: Annotated[str, typer.Argument(metavar="RUN", show_default=False,
                                       help="The run to collect: its id (printed by --detach), latest or latest~N.")],
    db: DbOption = None,
) -> None:
    """Gather the cells the Slurm jobs of a detached run have finished into its store and files; once every
    cell is in, write the report. Safe to repeat: what is already gathered is not gathered twice."""
    from archbench.results.store import Store
    from archbench.runs.collect import collect_run

    if not run.strip():
        raise UsageError("RUN is empty: give the run id --detach printed (or latest).")
    from archbench.cli.compare import CompareProgress, print_files, print_summary

    Store.open(db_path(db), readonly=True).close()  # a store that is not there is an error, not a new file
    with Store.open(db_path(db)) as store, CompareProgress() as listener:
        collected = collect_run(store, run, listener=listener)
    result = collected.result
    if result is None:
        err.print(f"run {collected.run_id} is complete: every cell is in; report: "
                  f"{escape(str(collected.out_dir / 'report.md'))}", soft_wrap=True)
        return
    if result.interrupted:
        done = len(result.data.rows)
        err.print(f"run {collected.run_id}: {done} of {result.data.planned_cells} cells are in; {collected.running} Slurm "
                  f"job(s) still queued or running. Collect again later: archbench collect {collected.run_id}", soft_wrap=True)
        return
    print_summary(result.data)
    print_files(result.files, result.out_dir)
