"""``archbench profile MODEL``: where one model's step time goes, module by module, with confidence intervals,
beside each module's FLOPs and bytes moved, on the device's measured roofline.

Thin: parse the options with the shared parsers, call :func:`archbench.runs.profile.profile_model`, write the
report folder (``profile.md``, ``profile.json``, ``roofline``/``time_breakdown`` plots, ``trace.json`` with
``--trace``), record the run in the results store, and print the module table (or JSON / Markdown).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from archbench.cli._common import JsonOption, SetOption, SpecsOption, err, measure_options, out, out_path, print_json
from archbench.cli.catalog import InputsOption, inputs_reference, model_name_warnings
from archbench.cli.history import DbOption, NoDbOption, open_recording_store, print_stored
from archbench.errors import PATH_ECHO_LIMIT, UsageError, quoted
from archbench.parsing import parse_choices, parse_input, parse_positive_ints, parse_set
from archbench.rows import DTYPES, MODES


def profile_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", show_default=False, help=(
        "Model name or reference: resnext-50, resnet18, tv:resnet18, timm:NAME, mypkg.models:MyNet, ./file.py:MyNet."))],
    input: Annotated[str | None, typer.Option("--input", metavar="CxHxW", show_default=False,
                                              help="Input CxHxW; default: the model's own.")] = None,
    batch: Annotated[str, typer.Option("--batch", metavar="N", help="Batch size.")] = "1",
    mode: Annotated[str, typer.Option("--mode", metavar="MODES", help="infer (forward) or train (forward, loss, backward).")] = "infer",
    dtype: Annotated[str, typer.Option("--dtype", metavar="DTYPES", help="fp32, bf16 or fp16 (bf16/fp16 under autocast).")] = "fp32",
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu, cuda or cuda:N.")] = "cpu",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Model and input in channels-last memory format.")] = False,
    depth: Annotated[int, typer.Option("--depth", metavar="D", help="Deepest module level timed and listed (1: the model's children).")] = 3,
    threads: Annotated[str | None, typer.Option("--threads", metavar="N", help="torch intra-op threads (default: torch's current count).", show_default=False)] = None,
    min_steps: Annotated[str, typer.Option("--min-steps", metavar="N", help="Profiled steps at least (10 give every module a 95% CI of its median).")] = "10",
    max_steps: Annotated[str, typer.Option("--max-steps", metavar="N", help="Profiled steps at most.")] = "50",
    precision: Annotated[str, typer.Option("--precision", metavar="FRACTION", help="Stop profiling once the 95% CI of the median step time is within this fraction of it.")] = "0.03",
    max_time: Annotated[str, typer.Option("--max-time", metavar="SECONDS", help="Seconds of profiling (after --min-steps) before it stops; also caps the timer's warm-up before the rounds (at most 4 s).")] = "30",
    out_dir: Annotated[str | None, typer.Option("--out", metavar="DIR", show_default=False, help="Folder of the report (default: reports/profile-<model>-<time>/).")] = None,
    trace: Annotated[bool, typer.Option("--trace", help="Also write the first profiled step's Chrome/Perfetto trace (trace.json) into the report folder.")] = False,
    json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the report as GitHub-flavoured Markdown to stdout.")] = False,
    set_: SetOption = None,
    model_inputs: InputsOption = None,
    specs: SpecsOption = None,
    db: DbOption = None,
    no_db: NoDbOption = False,
) -> None:
    """Time every module of one model over repeated profiled steps (torch.profiler): median and 95% CI per
    module, its share of the step, FLOPs, bytes moved, FLOPs/byte, achieved GFLOP/s and GB/s, and whether
    it sits under the memory or the compute roof of this device (both roofs measured). Prints the profiling
    overhead and the coverage; writes a roofline and a time-breakdown plot."""
    shape = parse_input(input) if input is not None else None
    batches = parse_positive_ints(batch, "--batch")
    if len(batches) != 1:
        raise UsageError(f"--batch {quoted(batch)} must be one batch size for a profile.")
    (mode_value,) = _one(parse_choices(mode, "--mode", MODES), "--mode", mode)
    (dtype_value,) = _one(parse_choices(dtype, "--dtype", DTYPES), "--dtype", dtype)
    if depth < 1:
        raise UsageError(f"--depth {depth} must be 1 or more (1 times the model's children only).")
    n_threads = _one(parse_positive_ints(threads, "--threads"), "--threads", threads)[0] if threads is not None else None
    steps = (_one(parse_positive_ints(min_steps, "--min-steps"), "--min-steps", min_steps)[0],
             _one(parse_positive_ints(max_steps, "--max-steps"), "--max-steps", max_steps)[0])
    if steps[0] > steps[1]:
        raise UsageError(f"--min-steps {steps[0]} is above --max-steps {steps[1]}: give --min-steps <= --max-steps.")
    measured = measure_options(precision, max_time)  # --precision and --max-time, checked as bench checks them
    if json and markdown:
        raise UsageError("--json and --markdown are exclusive: choose one output format.")
    if "," in device:
        raise UsageError(f"--device {quoted(device)} must be one device for a profile: cpu, cuda or cuda:N.")
    overrides = parse_set(set_)
    inputs_ref = inputs_reference(model_inputs)
    target = _checked_out(out_path(out_dir, "--out"), model)

    from archbench.catalog.refs import resolve_model
    from archbench.parsing import parse_device
    from archbench.timing.devices import require_device

    device_name = parse_device(device)
    require_device(device_name)
    with model_name_warnings():
        spec = resolve_model(model, extra_dirs=specs or (), args=overrides, inputs=inputs_ref)
    store = open_recording_store(db, no_db)

    from archbench.outputs import owned_dir
    from archbench.report.profile_view import TRACE_NAME, profile_markdown, profile_renderable, write_profile_report
    from archbench.report.roofline import ROOFLINE, TIME_BREAKDOWN
    from archbench.runs.profile import TIMER_BUDGET_S, ProfileOptions, profile_model, record_profile

    # the timer's warm-up and samples before the rounds get at most TIMER_BUDGET_S of the budget
    unprofiled = dataclasses.replace(measured, max_time_s=min(TIMER_BUDGET_S, measured.max_time_s))
    options = ProfileOptions(min_steps=steps[0], max_steps=steps[1], precision=measured.precision,
                             max_time_s=measured.max_time_s, unprofiled=unprofiled)
    with owned_dir(target), err.status(f"profiling {spec.name} ...", spinner="dots") as status:
        profile = profile_model(spec, shape, batches[0], mode=mode_value, dtype=dtype_value, device=device_name,
                                channels_last=channels_last, depth=depth, options=options, threads=n_threads,
                                trace_path=target / TRACE_NAME if trace else None,
                                on_phase=lambda text: status.update(f"profiling {spec.name}: {text} ..."))
        files = write_profile_report(profile, target)
        if trace:
            files.append(target / TRACE_NAME)
    run_id = None
    if store is not None:
        with store:
            run_id = record_profile(store, profile, _command(), target)
    if json:
        print_json(profile.to_dict())
    elif markdown:
        out.file.write(profile_markdown(profile, [ROOFLINE, TIME_BREAKDOWN]))
        out.file.flush()
    else:
        out.print(profile_renderable(profile))
    names = ", ".join(sorted(p.name for p in files))
    err.print(f"wrote {len(files)} files to {escape(quoted(str(target) + '/', PATH_ECHO_LIMIT))}: {escape(names)}", soft_wrap=True)
    if store is not None:
        print_stored(store, run_id)


def _one(values: list, option: str, text: str | None) -> list:
    if len(values) != 1:
        raise UsageError(f"{option} {quoted(text)}: give one value for a profile.")
    return values


def _checked_out(given: Path | None, model: str) -> Path:
    from archbench.outputs import check_writable_dir

    if given is not None:
        try:
            return check_writable_dir(given)
        except UsageError as exc:
            raise UsageError(f"--out: {exc}") from None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model).strip("-.") or "model"
    return check_writable_dir(Path("reports") / f"profile-{safe}-{stamp}")


def _command() -> str:
    return " ".join(["archbench", *map(shlex.quote, sys.argv[1:])]) if sys.argv else "archbench profile"


def report_profile(source: str, out_dir: Path | None, db: Path) -> bool:
    """``archbench report`` of a profile (a profile run of the store, a profile folder or ``profile.json``):
    the report folder written again (default: ``reports/run-<id>/`` for a run, else where it is) and the
    module table printed. False when ``source`` is no profile."""
    from archbench.runs.profile import load_profile

    found = load_profile(source, db)
    if found is None:
        return False
    profile, label = found
    from archbench.outputs import check_writable_dir, owned_dir
    from archbench.report.profile_view import profile_renderable, write_profile_report

    if out_dir is None:
        given = Path(source)
        out_dir = (given if given.is_dir() else given.parent) if given.exists() else Path("reports") / label.replace(" ", "-")
    target = check_writable_dir(out_dir)
    with owned_dir(target):
        files = write_profile_report(profile, target)
    out.print(profile_renderable(profile))
    err.print(f"wrote {len(files)} files to {escape(quoted(str(target) + '/', PATH_ECHO_LIMIT))} (the profile of {escape(label)})", soft_wrap=True)
    return True


def diff_profile_runs(base: str, new: str, db: Path, min_effect: float, allow_env_change: bool, markdown: bool,
                      json: bool) -> bool:
    """``archbench diff`` of two profiles (runs, folders or ``profile.json`` files): a table of modules,
    exit 1 when one is slower. False when neither side is a profile."""
    from archbench.runs.profile import load_profile

    sides = [load_profile(ref, db) for ref in (base, new)]
    if all(side is None for side in sides):
        return False
    if any(side is None for side in sides):
        which = base if sides[0] is None else new
        raise UsageError(f"{quoted(which, PATH_ECHO_LIMIT)} is not a profile while the other side is: diff compares two profiles, or two runs "
                         "of cells.")
    from archbench.runs.profile_diff import diff_profiles, profile_diff_to_json

    (base_profile, base_label), (new_profile, new_label) = sides
    result = diff_profiles(base_profile, new_profile, base_label, new_label, min_effect=min_effect,
                           allow_env_change=allow_env_change)
    if json:
        print_json(profile_diff_to_json(result))
    elif markdown:
        out.file.write(_diff_markdown(result))
        out.file.flush()
    else:
        _print_diff(result)
    if not result.comparable:
        names = ", ".join(d.name for d in result.env_differences)
        err.print(f"[yellow]warning:[/] the environments differ ({escape(names)}): the profiles are not comparable and "
                  "no module is called a regression (exit 0). Pass --allow-env-change to compare them anyway.")
    elif result.outcome == "regressed":
        err.print(f"[red]regressed:[/] {len(result.slower)} module(s) slower (exit 1).")
        raise typer.Exit(1)
    return True


def _diff_rows(result) -> list[list[str]]:
    from archbench.report.diff_markdown import p_text
    from archbench.results.significance import SYMBOLS
    from archbench.units import fmt_ms

    rows = []
    for layer in result.layers:
        counts = "" if (layer.base_flops, layer.base_bytes) == (layer.new_flops, layer.new_bytes) else (
            f"FLOPs {layer.base_flops:,} → {layer.new_flops:,}, bytes {layer.base_bytes:,} → {layer.new_bytes:,}")
        rows.append([layer.name or "(model)", fmt_ms(layer.base_median_ms), fmt_ms(layer.new_median_ms),
                     f"{layer.ratio - 1:+.1%}", f"{layer.low - 1:+.1%} … {layer.high - 1:+.1%}", p_text(layer.p_holm),
                     f"{SYMBOLS[layer.verdict]} {layer.verdict}", counts])
    return rows


_DIFF_COLUMNS = ("module", "base ms", "new ms", "change", "95% CI", "p (Holm)", "verdict", "counts changed")


def _print_diff(result) -> None:
    from rich import box
    from rich.table import Table

    out.print(f"{escape(result.base_label)} → {escape(result.new_label)}: module time new/base (per-step samples)")
    table = Table(box=box.SIMPLE_HEAD)
    for name in _DIFF_COLUMNS:
        table.add_column(name, justify="left" if name in ("module", "verdict", "counts changed") else "right")
    for row in _diff_rows(result):
        table.add_row(*(escape(c) for c in row))
    out.print(table)
    for name in result.only_in_base:
        out.print(f"only in the base: {escape(name)}")
    for name in result.only_in_new:
        out.print(f"only in the new profile: {escape(name)}")
    for note in result.notes:
        out.print(f"note: {escape(note)}")
    out.print(f"A change is called when its Holm-adjusted p < {result.alpha:g} and its whole 95% CI lies beyond "
              f"±{result.min_effect:.0%}. Outcome: {result.outcome}.")


def _diff_markdown(result) -> str:
    lines = [f"### Profile diff: {result.base_label} → {result.new_label}", "",
             "| " + " | ".join(_DIFF_COLUMNS) + " |", "|" + "---|" * len(_DIFF_COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") or " " for c in row) + " |" for row in _diff_rows(result)]
    lines += ["", f"Outcome: **{result.outcome}**.", ""]
    return "\n".join(lines)
