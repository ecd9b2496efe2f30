"""``archbench bench``: time models across devices, modes, batches, inputs and dtypes.

Thin: parse the options with the shared parsers, plan the cells, run the sweep (archbench.sweep.run) with a
rich progress bar and a live table of finished cells, then print the table (or JSON) and where the CSV
is. Ctrl-C keeps every finished cell and prints the command that resumes the sweep (exit 130); a sweep
whose every cell failed exits 1. The CSV is checked (archbench.outputs) and locked before anything runs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from archbench.cli._common import (
    JsonOption,
    QuickOption,
    SetOption,
    SpecsOption,
    err,
    measure_options,
    model_options,
    out,
    out_path,
    print_json,
    quick_defaults,
)
from archbench.cli.backends import BackendOption, CompileModeOption, parse_backends, print_backend_comparisons
from archbench.cli.catalog import InputsOption, inputs_reference, model_name_warnings
from archbench.cli.history import DbOption, NoDbOption, open_recording_store, print_stored
from archbench.cli.memory import (
    MaxBatchOption,
    MemoryLimitOption,
    batch_label,
    max_batch_settings,
    print_probe,
    print_searches,
    search_options,
    stored_rows,
)
from archbench.errors import UsageError, quoted
from archbench.parsing import (
    INT32_MAX,
    parse_batches,
    parse_choices,
    parse_inputs,
    parse_positive_ints,
    parse_set,
)
from archbench.resources import check_threads
from archbench.rows import DTYPES, MODES
from archbench.study import BENCH_BATCHES, DEFAULT_DEVICES, DEFAULT_DTYPES, DEFAULT_MODES
from archbench.sweep.plan import Eta, Plan
from archbench.timing.options import DEFAULT_MAX_TIME_S, DEFAULT_PRECISION
from archbench.units import fmt_duration, fmt_ms, fmt_spec


def bench_command(
    models: Annotated[list[str], typer.Argument(metavar="MODEL", show_default=False, help=(
        "Model names or references: resnext-50, resnet50, timm:NAME, mypkg.models:MyNet, ./file.py:MyNet."))],
    device: Annotated[str, typer.Option("--device", metavar="DEVICES", help="cpu, cuda, cuda:N, a comma-separated list, or auto (CPU plus CUDA when present).")] = ",".join(DEFAULT_DEVICES),
    batch: Annotated[str, typer.Option("--batch", metavar="N[,N...]", help="Batch sizes, comma-separated; max: the largest that fits (searched in a worker process).")] = ",".join(map(str, BENCH_BATCHES)),
    input: Annotated[str | None, typer.Option("--input", metavar="CxHxW[,...]", help="Inputs CxHxW, comma-separated; default: each model's own.", show_default=False)] = None,
    mode: Annotated[str, typer.Option("--mode", metavar="MODES", help="infer (eval, inference_mode) and/or train (forward+loss+backward).")] = ",".join(DEFAULT_MODES),
    dtype: Annotated[str, typer.Option("--dtype", metavar="DTYPES", help="fp32, bf16, fp16 (bf16/fp16 under autocast), comma-separated.")] = ",".join(DEFAULT_DTYPES),
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Model and input in channels-last memory format.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="Same as --backend compile.")] = False,
    backend: BackendOption = None,
    compile_mode: CompileModeOption = None,
    threads: Annotated[str | None, typer.Option("--threads", metavar="N", help="torch intra-op threads (default: torch's current count).", show_default=False)] = None,
    precision: Annotated[str | None, typer.Option("--precision", metavar="FRACTION", help=f"Stop sampling once the 95% CI of the median is within this fraction of it [default: {DEFAULT_PRECISION:g}].", show_default=False)] = None,
    max_time: Annotated[str | None, typer.Option("--max-time", metavar="SECONDS", help=f"Seconds per cell (warm-up included) before sampling stops; at least 5 samples are always taken [default: {DEFAULT_MAX_TIME_S:g}].", show_default=False)] = None,
    quick: QuickOption = False,
    out_file: Annotated[str | None, typer.Option("--out", metavar="FILE.csv", help="CSV file the rows are appended to (default: reports/bench-<time>.csv).", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep in --out: skip the cells already in it.")] = False,
    set_: SetOption = None,
    model_inputs: InputsOption = None,
    no_interleave: Annotated[bool, typer.Option("--no-interleave", help="With several models: time each model's cells in turn, not the models of each grid point in alternating rounds (no paired ratios).")] = False,
    json: JsonOption = False,
    specs: SpecsOption = None,
    db: DbOption = None,
    no_db: NoDbOption = False,
    memory_limit: MemoryLimitOption = None,
    max_batch: MaxBatchOption = None,
) -> None:
    """Time forward (infer) and forward+backward (train) steps of each model on every combination of the
    options; every finished cell is appended to the CSV at once. Several models are timed in alternating
    rounds at each combination, with paired time ratios against the first model in the CSV."""
    batches = parse_batches(batch, "--batch")
    search_settings = max_batch_settings(batches, memory_limit, max_batch)
    inputs = parse_inputs(input, "--input") if input is not None else None
    modes = parse_choices(mode, "--mode", MODES)
    dtypes = parse_choices(dtype, "--dtype", DTYPES)
    n_threads = _one_thread_count(threads)
    backends = parse_backends(backend, compile, compile_mode)
    precision, max_time = quick_defaults(quick, precision, max_time)
    options = measure_options(precision, max_time)
    max_time_s = options.max_time_s
    if resume and out_file is None:
        raise UsageError("--resume needs --out FILE: the CSV of the sweep to continue.")
    overrides = parse_set(set_)  # every model's: one that has no such argument is an error
    inputs_ref = inputs_reference(model_inputs)

    from archbench.catalog.refs import resolve_model
    from archbench.timing.devices import parse_devices

    devices = parse_devices(device)
    with model_name_warnings():
        model_specs = [resolve_model(name, extra_dirs=specs or (), args=overrides, inputs=inputs_ref)
                       for name in dict.fromkeys(models)]
    out_csv = _checked_out(out_path(out_file, "--out"))
    store = open_recording_store(db, no_db)

    from archbench.env.environment import environment
    from archbench.outputs import owned_file
    from archbench.results.sinks import keep_environment, where_kept
    from archbench.sweep.interleave import Interleaving
    from archbench.sweep.maxbatch import plan_with_max
    from archbench.sweep.recording import Recording
    from archbench.sweep.run import run_sweep
    cells = plan_with_max(model_specs, devices, batches, inputs, modes, dtypes, channels_last, False, n_threads,
                          settings=search_settings, previous=stored_rows(out_csv) if resume else (),
                          on_probe=print_probe, backends=backends)
    axes = (("model", len(model_specs)), ("device", len(devices)), ("input", len(inputs or [None])),
            ("dtype", len(dtypes)), ("batch", len(batches)), ("backend", len(backends)), ("mode", len(modes)))
    if not json:
        err.print(escape(Plan(len(cells), axes, max_time_s, str(out_csv)).describe()), soft_wrap=True)
    env = environment(devices, cells[0].threads if cells else n_threads)
    resume_command = _resume_command(models, device, batch, input, mode, dtype, channels_last, backends,
                                     cells[0].threads if cells else n_threads, precision, max_time, out_csv, specs,
                                     no_interleave, set_, model_inputs, memory_limit, max_batch)
    with owned_file(out_csv), store or contextlib.nullcontext(), LiveProgress(max_time_s) as listener:
        recording = None if store is None else Recording(
            store, resume_command.removesuffix(" --resume"), env=env, out_path=out_csv, planned_cells=len(cells),
            resume=resume and out_csv.exists(), listener=listener)  # a deleted CSV's run is not continued
        result = run_sweep(cells, out_csv, resume=resume, options=options,
                           listener=listener if recording is None else recording,
                           caches=None if recording is None else recording.caches,
                           interleave=None if no_interleave else Interleaving(model_specs[0].name))
        if recording is not None:
            recording.finish(result.rows, interrupted=result.interrupted or result.stopped)
        env_failure = None
        if result.measured and result.write_failure is None:
            env_failure = keep_environment(out_csv, env, {"peaks_tflops": result.peaks_tflops})
    kept = where_kept(result.unwritten, result.write_failure, recording)

    if json:
        print_json({"environment": env, "peaks_tflops": result.peaks_tflops, "csv": str(out_csv),
                    "interrupted": result.interrupted, "warnings": list(result.warnings),
                    "store": _json_store(recording), "rows": [_json_row(r) for r in result.rows],
                    "write_failures": [str(f) for f in (*kept.failures, *([env_failure] if env_failure else []))],
                    "lost_cells": len(kept.lost)})
    else:
        out.print(rows_table(result.rows, title=f"archbench bench: {len(result.rows)} of {len(cells)} cells"))
        print_backend_comparisons(result.rows)
        _print_failures(result.rows)
        print_searches(result.rows)
        _print_peaks(result.peaks_tflops)
    _print_saved(result, out_csv)
    if recording is not None:
        print_stored(recording.store, recording.recorded)
    if env_failure is not None:
        err.print(f"[yellow]warning:[/] {escape(str(env_failure))}: the rows are kept; the report of this CSV lacks this "
                  "session's environment.", soft_wrap=True)
    if not kept.complete:
        err.print(f"[bold red]error:[/] {escape(kept.summary())} (Their figures are in the table above only.)",
                  soft_wrap=True)
        raise typer.Exit(1)
    if kept.failures:
        err.print(f"[yellow]warning:[/] {escape(kept.summary())}", soft_wrap=True)
    if result.interrupted:
        err.print(f"interrupted: {len(result.rows)} of {len(cells)} cells are saved in {escape(str(out_csv))}. Resume with:")
        err.print(f"  {escape(resume_command)}", soft_wrap=True)
        raise typer.Exit(130)
    if result.all_failed:
        err.print(f"[red]every cell failed[/] ({len(result.rows)} of {len(result.rows)}).")
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------ options


def _default_out() -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"bench-{stamp}.csv"


def _checked_out(out_file: Path | None) -> Path:
    """The CSV to write (``--out`` or the default), checked before anything is measured."""
    from archbench.outputs import check_writable_file

    if out_file is not None:
        try:
            return check_writable_file(out_file)
        except UsageError as exc:
            raise UsageError(f"--out: {exc}") from None
    try:
        return check_writable_file(_default_out())
    except UsageError as exc:
        raise UsageError(f"{str(exc).rstrip('.')} (the default location, in the working directory): pass --out FILE.csv "
                         "to write elsewhere.") from None


def _one_thread_count(text: str | None) -> int | None:
    if text is None:
        return None
    counts = parse_positive_ints(text, "--threads", maximum=INT32_MAX)  # torch takes a C int
    if len(counts) > 1:
        raise UsageError(f"--threads {quoted(text)}: give one thread count; bench does not sweep thread counts. Run one bench "
                         "per count, each with its own --out, e.g. --threads 1 --out t1.csv.")
    return check_threads(counts[0], "--threads")


def _resume_command(models, device, batch, input, mode, dtype, channels_last, backends, threads, precision, max_time, out_csv, specs,
                    no_interleave, sets=None, model_inputs=None, memory_limit=None, max_batch=None) -> str:
    parts = ["archbench", "bench", *models, "--device", device, "--batch", batch]
    if input is not None:
        parts += ["--input", input]
    parts += ["--mode", mode, "--dtype", dtype]
    parts += ["--channels-last"] if channels_last else []
    parts += ["--backend", ",".join(backends)] if tuple(backends) != ("eager",) else []
    parts += ["--threads", str(threads)] if threads is not None else []
    parts += ["--precision", precision, "--max-time", max_time]
    parts += model_options(no_interleave, sets, model_inputs, specs)
    parts += search_options(memory_limit, max_batch)
    parts += ["--out", str(out_csv), "--resume"]
    return " ".join(shlex.quote(str(p)) for p in parts)


# ------------------------------------------------------------------------------------------ progress


class LiveProgress:
    """Sweep listener drawing a progress bar (cells done/total, current cell and phase, time left) above
    a live table of the finished cells, on stderr. Without a terminal, one line per finished cell."""

    def __init__(self, budget_s: float = math.inf):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.live_display = err.is_terminal
        self.budget_s = budget_s
        self.eta: Eta | None = None
        # rich's TimeRemainingColumn extrapolates from the recent speed: "-:--:--" until a cell finishes, then
        # "0:00:01" while minutes remain. archbench's estimate starts from the budgets (archbench.sweep.plan.Eta).
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[left]}"), console=err)
        self.task = None
        self.rows: list = []
        self.live = None

    def __enter__(self) -> LiveProgress:
        if self.live_display:
            from rich.live import Live

            self.live = Live(self._renderable(), console=err, transient=True, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _renderable(self):
        from rich.console import Group

        if not self.rows:
            return self.progress
        return Group(rows_table(self.rows[-15:], title=None, width=err.width), self.progress)

    def warning(self, message: str) -> None:
        err.print(f"[yellow]warning:[/] {escape(message)}")

    def sweep_started(self, total: int, already_done: int) -> None:
        self.eta = Eta(total, self.budget_s, done=already_done)
        self.task = self.progress.add_task("starting", total=total, completed=already_done, left=self._left())
        if already_done:
            err.print(f"resuming: {already_done} of {total} cells are already in the CSV and are skipped.")

    def _left(self) -> str:
        seconds = self.eta.remaining_s() if self.eta is not None else math.nan
        return f"left ~{fmt_duration(seconds)}" if math.isfinite(seconds) else ""

    def cell_started(self, cell, index: int, todo: int) -> None:
        self.progress.update(self.task, description=escape(cell.label()), left=self._left())

    def cell_phase(self, cell, phase: str) -> None:
        self.progress.update(self.task, description=f"{escape(cell.label())}: {phase}", left=self._left())

    def cell_finished(self, cell, row, index: int, todo: int) -> None:
        self.rows.append(row)
        self.eta.cell_finished()
        self.progress.update(self.task, advance=1, left=self._left())
        if self.live is not None:
            self.live.update(self._renderable())
        else:
            done = int(self.progress.tasks[0].completed)
            err.print(f"[{done}/{int(self.progress.tasks[0].total)}] {escape(cell.label())}: {escape(_short_outcome(row))}")


def _short_outcome(row) -> str:
    if row.status != "ok":
        return row.status
    return f"{fmt_ms(row.median_ms)} ms (n={row.n_samples}{', noisy' if row.noisy else ''})"


# ------------------------------------------------------------------------------------------- output


def _caption(rows) -> str | None:
    """What the table's marks mean, for the marks it shows."""
    from archbench.report.cells import under_coverage

    ok = [r for r in rows if r.status == "ok"]
    lines = []
    if any(r.stop_reason == "max_time" for r in ok):
        lines.append("† time limit reached before the 95% CI was within --precision of the median")
    if any(under_coverage(r) for r in ok):
        lines.append("[N%]: the CI's exact coverage where it is below 95% (fewer than 6 samples: the interval is the sample range)")
    if any(r.under_load for r in ok):
        lines.append("under load: the CPU was busy with other work while the cell ran (×R, interleaved cells: its median "
                     "about R× what its quiet bursts ran at): the time is probably inflated")
    return "\n".join(lines) or None


def _ci_cell(row) -> str:
    from archbench.report.cells import under_coverage
    from archbench.results.significance import ci_coverage
    from archbench.units import coverage_percent

    dagger = "†" if row.stop_reason == "max_time" else ""
    coverage = f" [{coverage_percent(ci_coverage(row))}]" if under_coverage(row) else ""
    return f"{fmt_ms(row.ci_low_ms)}–{fmt_ms(row.ci_high_ms)}{dagger}{coverage}"


def _ok_status(row) -> str:
    if row.under_load:
        # A lone cell's load_ratio is the calibration kernel's slowdown, not the cell's (a 1-thread kernel beside busy
        # processes read ×124 while the cell ran ×3 slower): shown only for interleaved cells, whose is their own.
        slowed = (f" ×{row.load_ratio:.1f}" if row.rounds and math.isfinite(row.load_ratio) and row.load_ratio >= 1.05
                  else "")
        return f"[yellow]under load{slowed}[/]"
    return "[yellow]noisy[/]" if row.noisy else "ok"


def rows_table(rows, title: str | None, width: int | None = None) -> Table:
    """Finished cells: median with its CI (95%, or its coverage when lower) and IQR, samples, throughput,
    FLOP/s, memory, status (``noisy``, ``under load``), fitted to ``width`` (default: stdout's): the
    least needed columns go first (archbench.fitted).

    Device, dtype and threads get a column only when they vary; otherwise they are named in the title."""
    from archbench.fitted import Column, fitted_table

    axes = ("mode", "batch", "input", "device", "dtype", "threads")
    named = {"batch": "batch {}", "threads": "threads {}"}
    shared = [named.get(name, "{}").format(values.pop()) for name in axes
              if len(rows) > 1 and len(values := {getattr(r, name) for r in rows}) == 1]
    varying = [name for name in axes if len(rows) <= 1 or len({getattr(r, name) for r in rows}) > 1]
    options = any(r.channels_last or r.backend != "eager" for r in rows)
    columns = [Column("model", shorten=20),
               *(Column(name, "right" if name in ("batch", "threads") else "left") for name in varying),
               *([Column("options", drop=2)] if options else []),
               Column("median\nms", "right"), Column("95% CI\nms", "right"), Column("IQR\nms", "right", drop=5),
               Column("n", "right", drop=3), Column("samples\n/s", "right", drop=4), Column("TFLOP\n/s", "right", drop=6),
               Column("%\npeak", "right", drop=6), Column("peak\nMB", "right", drop=4), Column("status")]
    body = []
    for r in rows:
        cells = [r.model, *(batch_label(r) if name == "batch" else str(getattr(r, name)) for name in varying)]
        if options:
            cells.append(", ".join(x for x, on in (("channels-last", r.channels_last), (r.backend, r.backend != "eager"))
                                   if on) or "eager")
        if r.status == "ok":
            cells += [fmt_ms(r.median_ms), _ci_cell(r), fmt_ms(r.iqr_ms),
                      str(r.n_samples), fmt_spec(r.samples_per_s, ",.1f"), fmt_spec(r.achieved_tflops, ".3f"),
                      fmt_spec(100 * r.peak_fraction, ".1f"), fmt_spec(r.peak_mem_mb, ",.1f"), _ok_status(r)]
        else:
            cells += ["—"] * 8 + [f"[red]{r.status}[/]"]
        body.append([escape(c) if i == 0 else c for i, c in enumerate(cells)])
    return fitted_table(columns, body, width or out.width, title=" · ".join([title, *shared]) if title else None,
                        title_justify="left", caption=_caption(rows), caption_justify="left")


def _print_failures(rows) -> None:
    """Each failure with its cell; a note shared by many ok rows (e.g. FLOPs not counted) once."""
    notes: dict[str, int] = {}
    for r in rows:
        if r.status != "ok":
            label = f"{r.model} {r.device} {r.mode} batch {r.batch} {r.input} {r.dtype}" + \
                (f" {r.backend}" if r.backend != "eager" else "")
            err.print(f"[red]{r.status}[/] ({escape(label)}): {escape(r.error)}")
        elif r.note:
            notes[r.note] = notes.get(r.note, 0) + 1
    for note, count in notes.items():
        err.print(f"note ({count} cell{'s' if count > 1 else ''}): {escape(note)}")


def _print_peaks(peaks: dict[str, float]) -> None:
    if peaks:
        text = ", ".join(f"{k} {v:.3f} TFLOP/s" for k, v in peaks.items())
        err.print(f"measured device peak (large matmul): {text}")


def _print_saved(result, out_csv: Path) -> None:
    parts = [f"{len(result.measured)} cell(s) measured"]
    if result.previous:
        parts.append(f"{len(result.previous)} already in the file")
    if result.unwritten:
        parts.append(f"{len(result.unwritten)} of them not in the CSV (it could not be written)")
    err.print(f"{', '.join(parts)}; results: {escape(str(out_csv))}")


def _json_store(recording) -> dict[str, Any] | None:
    """Where the run was recorded (None: not recorded)."""
    if recording is None or recording.recorded is None:
        return None
    return {"db": str(recording.store.path), "run_id": recording.recorded}


def _json_row(row) -> dict[str, Any]:
    import dataclasses

    data = dataclasses.asdict(row)
    data["samples_ms"] = list(row.samples_ms)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}
