"""``archbench compare`` (run a study, write its report) and ``archbench report`` (re-render a stored one).

Thin: parse the options with the shared parsers into a :class:`~archbench.study.Study`, run it with
:func:`archbench.runs.compare.run_compare` under a progress display, then print a summary — the architecture
table, the speed tables of the first device, the relative speeds — and the paths written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from archbench.cli._common import (
    QuickOption,
    SetOption,
    SpecsOption,
    err,
    measure_options,
    model_options,
    out,
    out_path,
    quick_defaults,
)
from archbench.cli.backends import BackendOption, CompileModeOption, parse_backends
from archbench.cli.catalog import InputsOption, inputs_reference, model_name_warnings
from archbench.cli.collect import (
    AccountOption,
    ConstraintOption,
    DetachOption,
    ExecutorOption,
    GpusOption,
    PartitionOption,
    QosOption,
    SbatchOption,
    SharedNodeOption,
    TimeLimitOption,
    WorkersOption,
    executor_command_args,
    executor_settings,
    print_detached,
)
from archbench.cli.history import DbOption, NoDbOption, db_path, open_recording_store, print_stored
from archbench.cli.memory import (
    MaxBatchOption,
    MemoryLimitOption,
    max_batch_settings,
    print_probe,
    print_searches,
    search_options,
)
from archbench.errors import PATH_ECHO_LIMIT, UsageError, quoted
from archbench.listeners import Forwarding
from archbench.parsing import parse_batches, parse_choices, parse_inputs, parse_set
from archbench.rows import DTYPES, MODES
from archbench.study import DEFAULT_BATCHES, DEFAULT_DEVICES, DEFAULT_DTYPES, DEFAULT_MODES

_GRID_OPTIONS = ("--batch", "--input", "--device", "--mode", "--dtype", "--reference", "--title")


def compare_command(
    models: Annotated[list[str] | None, typer.Argument(metavar="MODEL", show_default=False, help=(
        "Models to compare: names or references (resnext-50, resnet50, timm:NAME, mypkg.models:MyNet, "
        "./file.py:MyNet); none: the default study."))] = None,
    study: Annotated[str | None, typer.Option("--study", metavar="FILE|NAME", help="A study file (TOML), or the name of one in specs/studies/.", show_default=False)] = None,
    batch: Annotated[str | None, typer.Option("--batch", metavar="N[,N...]", help="Batch sizes, comma-separated; max: the largest that fits [default: 1,8].", show_default=False)] = None,
    input: Annotated[str | None, typer.Option("--input", metavar="CxHxW[,...]", help="Inputs CxHxW, comma-separated [default: each model's own].", show_default=False)] = None,
    device: Annotated[str | None, typer.Option("--device", metavar="DEVICES", help="cpu, cuda, cuda:N, a comma-separated list, or auto [default: cpu].", show_default=False)] = None,
    mode: Annotated[str | None, typer.Option("--mode", metavar="MODES", help="infer and/or train [default: infer,train].", show_default=False)] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", metavar="DTYPES", help="fp32, bf16, fp16 [default: fp32].", show_default=False)] = None,
    reference: Annotated[str | None, typer.Option("--reference", metavar="MODEL", help="Model the others are compared against [default: the first].", show_default=False)] = None,
    title: Annotated[str | None, typer.Option("--title", metavar="TEXT", help="Report title [default: the models, 'a vs b'].", show_default=False)] = None,
    max_time: Annotated[str | None, typer.Option("--max-time", metavar="SECONDS", help="Seconds per cell, warm-up included [default: the study's; 8 for models named here].", show_default=False)] = None,
    precision: Annotated[str | None, typer.Option("--precision", metavar="FRACTION", help="Stop a cell once its 95% CI is within this fraction of the median [default: the study's, 0.03].", show_default=False)] = None,
    out_dir: Annotated[str | None, typer.Option("--out", metavar="DIR", help="Report folder [default: reports/<study name>/].", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted run of this study (finished cells are kept).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Discard an interrupted run, or replace a folder holding another report.")] = False,
    no_interleave: Annotated[bool, typer.Option("--no-interleave", help="Time each model's cells in turn, not the models of each grid point in alternating rounds (no paired ratios).")] = False,
    quick: QuickOption = False,
    set_: SetOption = None,
    model_inputs: InputsOption = None,
    specs: SpecsOption = None,
    db: DbOption = None,
    no_db: NoDbOption = False,
    executor: ExecutorOption = None,
    workers: WorkersOption = None,
    partition: PartitionOption = None,
    gpus_per_job: GpusOption = None,
    constraint: ConstraintOption = None,
    time_limit: TimeLimitOption = None,
    account: AccountOption = None,
    qos: QosOption = None,
    sbatch: SbatchOption = None,
    no_exclusive: SharedNodeOption = False,
    detach: DetachOption = False,
    memory_limit: MemoryLimitOption = None,
    max_batch: MaxBatchOption = None,
    backend: BackendOption = None,
    compile_mode: CompileModeOption = None,
) -> None:
    """Compare models cell by cell (devices x inputs x batches x modes x dtypes) and write a report:
    report.md, results.csv, results.json and plots. With no arguments, runs the default study."""
    grid_given = {name: value for name, value in zip(_GRID_OPTIONS, (batch, input, device, mode, dtype, reference, title))
                  if value is not None}
    if quick:  # the preset, written out: the reproduce command says what was measured
        precision, max_time = quick_defaults(quick, precision, max_time)
    if models and study is not None:
        raise UsageError("give either models to compare or --study FILE, not both.")
    if reference is not None and not reference.strip():
        raise UsageError("--reference is empty: name one of the models compared.")
    out_dir = out_path(out_dir, "--out")
    if not models and grid_given:
        verb = "applies" if len(grid_given) == 1 else "apply"
        raise UsageError(f"{', '.join(grid_given)} {verb} only to an ad-hoc comparison: name the models "
                         "(archbench compare MODEL MODEL ...), or edit the study file.")
    overrides = parse_set(set_)  # every model's: one that has no such argument is an error
    inputs_ref = inputs_reference(model_inputs)
    per_model = [option for option, given in (("--set", set_), ("--inputs", model_inputs)) if given]
    if not models and per_model:
        raise UsageError(f"{' and '.join(per_model)} apply only to an ad-hoc comparison: name the models, or give "
                         "each model of the study file its args and inputs ({ model = ..., args = {...}, inputs = ... }).")

    from archbench.study import adhoc_study, default_study_path, find_study, load_study

    if models:
        the_study = adhoc_study(
            models,
            devices=_devices(device),
            inputs=parse_inputs(input, "--input") if input is not None else None,
            batches=parse_batches(_or_default(batch, ",".join(map(str, DEFAULT_BATCHES))), "--batch"),
            modes=parse_choices(_or_default(mode, ",".join(DEFAULT_MODES)), "--mode", MODES),
            dtypes=parse_choices(_or_default(dtype, ",".join(DEFAULT_DTYPES)), "--dtype", DTYPES),
            reference=reference,
            title=title or "",
            args=overrides,
            model_inputs=inputs_ref,
        )
    else:
        the_study = load_study(find_study(study) if study is not None else default_study_path())
    the_study = _with_options(the_study, measure_options(precision, max_time, the_study.options.measure),
                              interleave=False if no_interleave else None)
    the_study = _with_search(the_study, memory_limit, max_batch)
    if backend is not None or compile_mode is not None:  # a grid axis, given here for a study file too
        backends = parse_backends(backend, False, compile_mode)
        the_study = dataclasses.replace(the_study, grid=dataclasses.replace(the_study.grid, backends=backends))
        grid_given = {**grid_given, "--backend": ",".join(backends)}
    executor_args = executor_command_args(executor, workers, partition, gpus_per_job, constraint, time_limit, account,
                                          qos, sbatch, no_exclusive)
    settings = executor_settings(the_study.executor, executor=executor, workers=workers, partition=partition,
                                 gpus_per_job=gpus_per_job, constraint=constraint, time_limit=time_limit, account=account,
                                 qos=qos, sbatch=sbatch, no_exclusive=no_exclusive, detach=detach,
                                 targets=the_study.targets)
    command = reproduce_command(models, study, grid_given, max_time, precision, out_dir, specs, no_interleave,
                                set_, model_inputs, [*executor_args, *search_options(memory_limit, max_batch)])
    store = open_recording_store(db, no_db)

    from archbench.execute.executors import make_executor
    from archbench.runs.compare import run_compare

    runner = make_executor(settings)
    plan = study_plan(the_study, out_dir)
    err.print(escape(plan.describe()), soft_wrap=True)
    with store or contextlib.nullcontext(), CompareProgress(plan.budget_s) as listener, model_name_warnings():
        result = run_compare(the_study, out_dir, command=command, resume=resume, force=force,
                             extra_dirs=specs or (), listener=listener, store=store, executor=runner)
    if settings.detach and result.interrupted and result.counted:
        print_detached(result.run_id, runner.jobs, result.data.planned_cells, db)
        return
    if store is not None:
        print_stored(store, result.run_id)
    if result.interrupted and not result.counted:
        err.print(f"interrupted while counting the models: nothing was measured yet ({result.data.planned_cells} cell(s) "
                  f"planned) and nothing was written to {escape(str(result.out_dir))}. Run the command again to start over.")
        raise typer.Exit(130)
    if result.interrupted:
        err.print(f"interrupted: {len(result.data.rows)} of {result.data.planned_cells} cells are saved in "
                  f"{escape(str(result.partial_csv))}; the report is written when every cell is done. Resume with:")
        err.print(f"  {escape(command)} --resume", soft_wrap=True)
        raise typer.Exit(130)
    print_summary(result.data)
    print_searches(result.data.rows)
    print_files(result.files, result.out_dir)
    if result.all_failed:
        err.print(f"[red]every cell failed[/] ({len(result.data.rows)} of {len(result.data.rows)}): see the errors in the report.")
        raise typer.Exit(1)


def report_command(
    sources: Annotated[list[str], typer.Argument(metavar="RUN|RESULTS.csv|DIR", show_default=False, help=(
        "A run of the results store (an id, latest or latest~N), a results CSV (a compare report's results.csv, "
        "or a bench CSV) or a report folder; several are merged into one report."))],
    out_dir: Annotated[str | None, typer.Option("--out", metavar="DIR", show_default=False, help=(
        "Folder to write to [default: the report's folder; for a bench CSV, a folder named after it; for a run, "
        "reports/run-<id>/]."))] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a folder holding another report, or report files archbench did not write.")] = False,
    db: DbOption = None,
) -> None:
    """Render a report without measuring: from a run of the results store, a bench CSV, or a compare report's
    results.csv or folder (the same report.md and plots as the run that produced them). Several sources are
    merged into one report (a device measured by more than one is labelled per source: cpu@run12)."""
    from archbench.runs.compare import render

    if len(sources) > 1:
        _report_merged(sources, out_dir, force, db)
        return
    source = sources[0]
    if not source.strip():
        raise UsageError("RUN|RESULTS.csv|DIR is empty: give a run id (or latest), a results CSV or a report folder.")
    if db is not None and Path(source).exists():
        raise UsageError(f"--db names the store a run id refers to, and {quoted(source, PATH_ECHO_LIMIT)} is a file or folder: leave --db out.")
    from archbench.cli.profile import report_profile  # a profile (run, folder or profile.json) renders as one

    if report_profile(source, out_path(out_dir, "--out"), db_path(db)):
        return
    rendered = render(source, out_path(out_dir, "--out"), force=force, db_path=db_path(db))
    for warning in rendered.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    print_summary(rendered.data)
    print_files(rendered.files, rendered.out_dir)


def _report_merged(sources: list[str], out_dir: str | None, force: bool, db: str | None) -> None:
    from archbench.results.sources import load_source
    from archbench.runs.compare import REPORTS_DIR, write_rendered
    from archbench.runs.merge import merge

    if any(not s.strip() for s in sources):
        raise UsageError("RUN|RESULTS.csv|DIR is empty: give run ids (or latest), results CSVs or report folders.")
    loaded = [load_source(s, db_path(db)) for s in sources]
    data = merge(loaded, command=" ".join(["archbench", "report", *map(shlex.quote, sources)]))
    target = out_path(out_dir, "--out") or REPORTS_DIR / "merged"
    files = write_rendered(data, target, force=force)
    for warning in (w for s in loaded for w in s.warnings):
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    print_summary(data)
    print_files(files, target)


# ------------------------------------------------------------------------------------------ options


def _or_default(value: str | None, default: str) -> str:
    """The option's value, or its default when it was not given (an empty value is given, and invalid)."""
    return default if value is None else value


def _devices(text: str | None) -> list[str]:
    from archbench.timing.devices import parse_devices

    return parse_devices(_or_default(text, ",".join(DEFAULT_DEVICES)))


def _with_options(study, measure, interleave: bool | None = None):
    """The study measured with ``measure`` (its own, with --precision/--max-time over it)."""
    changes = {"measure": measure, **({"interleave": interleave} if interleave is not None else {})}
    return dataclasses.replace(study, options=dataclasses.replace(study.options, **changes))


def _with_search(study, memory_limit: str | None, max_batch: str | None):
    """``--memory-limit`` / ``--max-batch`` into the study's options (they bound a batch ``max`` only)."""
    import dataclasses

    if memory_limit is None and max_batch is None:
        return study
    batches = [*study.grid.batches, *(b for g in study.grid.per_device.values() for b in g.get("batches", ()))]
    settings = max_batch_settings(batches, memory_limit, max_batch)
    options = dataclasses.replace(study.options, memory_limit=settings.memory_limit_bytes or study.options.memory_limit,
                                  max_batch=settings.max_batch or study.options.max_batch)
    return dataclasses.replace(study, options=options)


def reproduce_command(models, study, grid_given: dict, max_time, precision, out_dir, specs, no_interleave=False,
                      sets=None, model_inputs=None, executor_args=()) -> str:
    """The command line that reruns this comparison (what the report prints under "Reproduce with")."""
    parts = ["archbench", "compare", *(models or [])]
    if study is not None:
        parts += ["--study", study]
    for option, value in grid_given.items():
        parts += [option, value]
    parts += ["--max-time", max_time] if max_time is not None else []
    parts += ["--precision", precision] if precision is not None else []
    parts += model_options(no_interleave, sets, model_inputs, specs)
    parts += [*executor_args]
    parts += ["--out", str(out_dir)] if out_dir is not None else []
    return " ".join(shlex.quote(str(p)) for p in parts)


def study_plan(study, out_dir: Path | None):
    """The plan line of a study: its cells by axis (each device with its own grid) and budget."""
    from archbench.sweep.plan import Plan

    grids = [study.grid.for_device(device) for device in study.grid.devices]
    sizes = [(len(g.inputs) if g.inputs else 1) * len(g.dtypes) * len(g.batches) * len(g.modes) * len(g.backends or "e")
             for g in grids]
    first = grids[0]
    axes = (("model", len(study.models)), ("device", len(grids)), ("input", len(first.inputs or [None])),
            ("dtype", len(first.dtypes)), ("batch", len(first.batches)), ("backend", len(first.backends or "e")),
            ("mode", len(first.modes)))
    from archbench.runs.compare import report_dir

    where = f"{out_dir if out_dir is not None else report_dir(study)}/"
    budget = study.options.measure.budget_s
    return Plan(len(study.models) * sum(sizes), axes, budget, where)


# ------------------------------------------------------------------------------------------ progress


def _progress_base():
    from archbench.cli.bench import LiveProgress  # the bench command's progress bar and live table

    return LiveProgress


class CompareProgress(Forwarding):
    """The bench progress display, plus a line per model/input while the models are counted."""

    def __init__(self, budget_s: float = math.inf):
        self.inner = _progress_base()(budget_s)

    def __enter__(self) -> CompareProgress:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.inner.__exit__(*exc)

    def counting(self, model: str, input: str) -> None:
        err.print(f"counting {escape(model)} at {input} (parameters, MACs, activation memory)")

    def batch_probed(self, cell, probe) -> None:
        print_probe(cell, probe)


# ------------------------------------------------------------------------------------------- output


def _rich_table(frame, title: str, first: str = "model") -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column(first, no_wrap=True)
    for column in frame.columns:
        table.add_column(str(column), justify="right", no_wrap=True)
    for index, values in zip(frame.index, frame.values.tolist()):
        table.add_row(escape(str(index)), *(escape(str(v)) for v in values))
    return table


def _grid_table(frames, title: str, width: int) -> Table:
    """A model × (input · batch) table that fits ``width``: the first of ``frames`` (fuller cells first) whose
    pivot fits, else the last one stacked — a line per model and grid point — so no cell is ever cut."""
    from archbench.fitted import fits

    for frame in frames:
        table = _rich_table(frame, title)
        if fits(table, width):
            return table
    stacked = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("model", "input · batch", "value"):
        stacked.add_column(name, justify="right" if name == "value" else "left", no_wrap=name != "model")
    for model, values in zip(frames[-1].index, frames[-1].values.tolist()):
        for column, value in zip(frames[-1].columns, values):
            stacked.add_row(escape(str(model)), str(column), escape(str(value)))
    return stacked


def architecture_rich_table(data, width: int | None = None) -> Table:
    """The counts of each model, fitted to ``width`` (default stdout's): the least needed columns go first."""
    from archbench.fitted import Column, fitted_table
    from archbench.report.tables import architecture_table
    from archbench.units import fmt_int, fmt_scaled, fmt_sig

    arch = architecture_table(data)
    columns = [Column("model", shorten=20), Column("params", "right"), Column("param\nMB", "right", drop=3),
               Column("MACs", "right"), Column("MACs\nw/ norm", "right", drop=2), Column("fwd\nFLOPs", "right", drop=4),
               Column("bwd\nFLOPs", "right", drop=1), Column("act. MB\n/sample", "right", drop=2), Column("input")]
    body = [[escape(str(model)), fmt_int(params), fmt_sig(param_mb), fmt_scaled(gmacs * 1e9, "MACs") + _incomplete(data, model, input),
             fmt_scaled(with_norm * 1e9, "MACs"), fmt_scaled(fwd * 1e9, "FLOPs"), fmt_scaled(bwd * 1e9, "FLOPs"),
             fmt_sig(act), input]
            for model, params, param_mb, gmacs, with_norm, fwd, bwd, act, input in zip(
                arch["model"], arch["params"], arch["param_mb"], arch["gmacs"], arch["gmacs_with_norm"],
                arch["gflops_forward"], arch["gflops_backward"], arch["activation_mb_per_sample"], arch["input"])]
    return fitted_table(columns, body, width or out.width, title="Models (default input, batch 1; 1 MAC = 2 FLOPs)",
                        title_justify="left")


def _incomplete(data, model: str, input: str) -> str:
    stats = data.stats_for(model, input)
    return " (incomplete)" if stats is not None and stats.macs_flag else ""


def print_summary(data) -> None:
    """Architecture table, the speed and relative-speed tables of the first device and dtype, and the
    footnotes (failures, cells measured under load), on stdout."""
    from archbench.report.cells import Footnotes, load_note, time_cell
    from archbench.report.relative import relative_tables
    from archbench.report.tables import speed_tables, text_table

    out.print(architecture_rich_table(data))
    notes = Footnotes("plain")
    tables = speed_tables(data, notes)
    first = tables[0][0] if tables else None
    for key, frame in tables:
        if (key.device, key.dtype) == (first.device, first.dtype):
            compact = text_table(data, key, time_cell, notes, flag_load=True)  # median (CI), no throughput
            out.print(_grid_table([frame, compact], f"{key.title()}: median ms (95% CI unless stated)", out.width))
    relative = [(key, frame) for key, frame in relative_tables(data) if (key.device, key.dtype) == (first.device, first.dtype)]
    if relative:
        out.print(f"Relative speed (reference {escape(data.study.reference)}): ×(reference time / time), > 1: faster; "
                  "\"paired\": from interleaved rounds (the figure to quote), else from the CI ends of the two medians")
    for key, frame in relative:
        out.print(_grid_table([frame], key.title(), out.width))
    for number, message in notes.items():
        out.print(f"[{number}] {escape(message)}")
    if note := load_note(data.rows):
        out.print(escape(note))


def print_files(files, out_dir: Path) -> None:
    names = ", ".join(sorted({p.name for p in files}, key=lambda n: (not n.endswith(".md"), n)))
    err.print(f"wrote {len(files)} files to {escape(quoted(str(out_dir) + '/', PATH_ECHO_LIMIT))}: {escape(names)}")
    err.print(f"report: {escape(quoted(Path(out_dir) / 'report.md', PATH_ECHO_LIMIT))}")
