"""``archbench memory MODEL``: the memory a training step needs at a batch, part by part, and the largest batch
within a budget; and what ``bench``/``compare`` share for ``--batch max`` (``--memory-limit``, ``--max-batch``,
how a found batch is shown).

Thin: parse, call :func:`archbench.memory_estimate.estimate_memory` (and, with ``--measure``,
:func:`archbench.sweep.maxbatch.measure_step_peak`), render a table.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from archbench.cli._common import JsonOption, SetOption, SpecsOption, err, out, print_json
from archbench.cli.catalog import InputsOption, inputs_reference, model_name_warnings
from archbench.errors import UsageError, quoted
from archbench.parsing import MAX_BATCH, parse_bytes, parse_choices, parse_input, parse_positive_ints, parse_set
from archbench.units import fmt_int, mib

OPTIMIZER_CHOICES = ("none", "sgd", "sgd-momentum", "adam", "adamw")  # as archbench.memory_estimate.OPTIMIZERS
PART_LABELS = {"parameters": "parameters + buffers", "gradients": "gradients", "optimizer": "optimizer state",
               "inputs": "inputs", "activations": "activations saved for backward", "workspace": "workspace (transient)"}

MemoryLimitOption = Annotated[str | None, typer.Option(
    "--memory-limit", metavar="SIZE", show_default=False,
    help="With --batch max: the memory the step may use (e.g. 8GiB), enforced in the search's worker process "
         "[default: the device's memory; on the CPU what is available].")]
MaxBatchOption = Annotated[str | None, typer.Option(
    "--max-batch", metavar="N", show_default=False, help="With --batch max: never search above this batch.")]


# ------------------------------------------------------------------------------------ --batch max


def max_batch_settings(batches, memory_limit: str | None, max_batch: str | None):
    """The search settings of ``--memory-limit`` / ``--max-batch``, which only a ``max`` batch uses."""
    from archbench.sweep.maxbatch import MaxBatchSettings

    given = [name for name, value in (("--memory-limit", memory_limit), ("--max-batch", max_batch)) if value is not None]
    if given and MAX_BATCH not in batches:
        raise UsageError(f"{' and '.join(given)} bound the search of --batch max: add max to --batch (e.g. --batch 1,max), "
                         f"or leave {' and '.join(given)} out.")
    limit = parse_bytes(memory_limit, "--memory-limit") if memory_limit is not None else None
    cap = None
    if max_batch is not None:
        caps = parse_positive_ints(max_batch, "--max-batch")
        if len(caps) != 1:
            raise UsageError(f"--max-batch {quoted(max_batch)}: give one batch size, e.g. --max-batch 4096.")
        cap = caps[0]
    return MaxBatchSettings(limit, cap)


def search_options(memory_limit: str | None, max_batch: str | None) -> list[str]:
    """The options of a reproduce/resume command line that bound the search."""
    parts = ["--memory-limit", memory_limit] if memory_limit is not None else []
    return parts + (["--max-batch", max_batch] if max_batch is not None else [])


def stored_rows(out_csv) -> tuple:
    """The rows of a CSV being resumed (a found batch is kept, not searched again)."""
    from archbench.rows import read_rows_csv

    return tuple(read_rows_csv(out_csv)) if out_csv.exists() and out_csv.stat().st_size else ()


def print_probe(cell, probe) -> None:
    what = f"{cell.model} {cell.device} {cell.mode} {cell.input_str} {cell.dtype}"
    if probe.fits:
        peak = f" (peak {mib(int(probe.peak_bytes))})" if math.isfinite(probe.peak_bytes) else ""
        err.print(f"largest batch of {escape(what)}: batch {probe.batch:,} fits{peak}")
    else:
        err.print(f"largest batch of {escape(what)}: batch {probe.batch:,} does not fit: {escape(probe.reason[:160])}")


def batch_label(row) -> str:
    """The batch column: ``512 max`` for a batch the search found."""
    return f"{row.batch} max" if getattr(row, "max_batch_bound", "") else str(row.batch)


BOUND_WORDS = {"oom": "the device's memory ran out", "memory_limit": "the memory limit", "max_batch": "the --max-batch cap"}


def print_searches(rows) -> None:
    """One line per found batch: what stopped the search, the prediction and the probes."""
    for r in rows:
        if not getattr(r, "max_batch_bound", ""):
            continue
        limit = f" of {mib(int(r.memory_limit_mb * 2**20))}" if math.isfinite(r.memory_limit_mb) else ""
        bound = BOUND_WORDS.get(r.max_batch_bound, r.max_batch_bound) + (limit if r.max_batch_bound != "max_batch" else "")
        predicted = f"predicted {r.max_batch_predicted:,}; " if r.max_batch_predicted else ""
        err.print(f"batch max ({escape(r.model)} {r.device} {r.mode} {r.input} {r.dtype}): {r.batch:,}, stopped by "
                  f"{escape(bound)}; {predicted}probes: {escape(r.max_batch_probes)}")


# ---------------------------------------------------------------------------------- archbench memory


def memory_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", show_default=False, help=(
        "Model name or reference: resnext-50, resnet50, timm:NAME, mypkg.models:MyNet, ./file.py:MyNet."))],
    input: Annotated[str | None, typer.Option("--input", metavar="CxHxW", show_default=False,
                                                 help="Input CxHxW; default: the model's own.")] = None,
    batch: Annotated[str, typer.Option("--batch", metavar="N[,N...]", help="Batch sizes, comma-separated.")] = "1",
    optimizer: Annotated[str | None, typer.Option("--optimizer", metavar="NAME", show_default=False, help=(
        "Optimizer whose state and step are counted: none, sgd, sgd-momentum, adam, adamw [default: adamw; "
        "none for infer]."))] = None,
    mode: Annotated[str, typer.Option("--mode", metavar="MODE", help="train (forward, loss, backward, optimizer step) or infer.")] = "train",
    dtype: Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="fp32, or bf16/fp16 under autocast (AMP: fp32 master weights).")] = "fp32",
    budget: Annotated[str | None, typer.Option("--budget", metavar="SIZE", show_default=False, help="A memory budget (e.g. 24GiB): print the largest batch whose estimate fits.")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="Also run each batch's step in a fresh process and show its measured peak (CPU: peak resident set).")] = False,
    set_: SetOption = None,
    inputs: InputsOption = None,
    json: JsonOption = False,
    specs: SpecsOption = None,
) -> None:
    """The memory one step needs at each batch: parameters, gradients, optimizer state, inputs, activations
    saved for backward and transient workspace (measured tensor by tensor at two small batches, extended to
    each batch), and the largest batch within --budget."""
    shape = parse_input(input) if input is not None else None
    batches = parse_positive_ints(batch, "--batch")
    modes = parse_choices(mode, "--mode", ("train", "infer"))
    dtypes = parse_choices(dtype, "--dtype", ("fp32", "bf16", "fp16"))
    optimizers = parse_choices(optimizer, "--optimizer", OPTIMIZER_CHOICES) if optimizer is not None else []
    if len(modes) != 1 or len(dtypes) != 1 or len(optimizers) > 1:
        raise UsageError("--mode, --dtype and --optimizer take one value each for archbench memory.")
    if modes[0] == "infer" and optimizers not in ([], ["none"]):
        raise UsageError(f"--optimizer {optimizers[0]} with --mode infer: an inference step has no optimizer; leave "
                         "--optimizer out.")
    the_optimizer = optimizers[0] if optimizers else ("adamw" if modes[0] == "train" else "none")
    budget_bytes = parse_bytes(budget, "--budget") if budget is not None else None
    overrides = parse_set(set_)
    inputs_ref = inputs_reference(inputs)

    from archbench.catalog.refs import resolve_model

    with model_name_warnings():
        source = resolve_model(model, extra_dirs=specs or (), args=overrides, inputs=inputs_ref)
    from archbench.memory_estimate import estimate_memory  # imports torch

    with err.status(f"measuring a step of {source.name} at two small batches ...", spinner="dots"):
        first = estimate_memory(source, shape, batch=batches[0], mode=modes[0], dtype=dtypes[0], optimizer=the_optimizer)
    estimates = [first.at(b) for b in batches]
    measured = {}
    if measure:
        from archbench.sweep.maxbatch import measure_step_peak

        for b in batches:
            with err.status(f"running a step at batch {b} in a fresh process ...", spinner="dots"):
                measured[b] = measure_step_peak(source, shape, b, mode=modes[0], dtype=dtypes[0], optimizer=the_optimizer)
    fitting = first.largest_batch(budget_bytes) if budget_bytes is not None else None
    if json:
        print_json(_json(estimates, measured, budget_bytes, fitting))
        return
    for table in _tables(estimates, measured, out.width):
        out.print(table)
    err.print(f"activations: {mib(int(first.activation_bytes_per_sample))} per sample (measured at batches "
              f"{first.measured_batches[0]} and {first.measured_batches[1]}); the parts are those live at the step's "
              "largest moment. Not seen: memory kernels allocate outside tensors (oneDNN, cuDNN workspaces), the "
              "allocator's slack, the torch libraries.")
    if budget_bytes is not None:
        err.print(f"largest batch within {mib(budget_bytes)}: {fmt_int(fitting)} (estimate)")


def _tables(estimates, measured, width: int) -> list[Table]:
    """One table with a column per batch if it fits ``width``, else the batches spread over as few tables as
    fit (a figure is never wrapped or cut)."""
    from archbench.fitted import fits

    for count in range(1, len(estimates) + 1):
        ends = [round(len(estimates) * (k + 1) / count) for k in range(count)]  # sizes differ by one at most
        tables = [_table(estimates[start:end], measured, title=start == 0) for start, end in zip([0, *ends], ends)]
        if all(fits(t, width) for t in tables):
            break
    return tables


def _table(estimates, measured, title: bool = True) -> Table:
    first = estimates[0]
    heading = (f"archbench memory: {first.model} · {first.input} · {first.mode} · {first.dtype} · optimizer "
               f"{first.optimizer}")
    table = Table(box=box.SIMPLE_HEAD, title=escape(heading) if title else None, title_justify="left")
    table.add_column("part", no_wrap=True)
    for e in estimates:
        table.add_column(f"batch {e.batch:,}", justify="right", no_wrap=True)
    for part, label in PART_LABELS.items():
        table.add_row(label, *(mib(e.parts[part]) for e in estimates))
    table.add_row("[bold]total (estimate)[/]", *(f"[bold]{mib(e.total)}[/]" for e in estimates))
    if measured:
        table.add_row("measured peak", *(_measured(measured[e.batch]) for e in estimates))
        table.add_row("estimate / measured", *(_ratio(e, measured[e.batch]) for e in estimates))
    return table


def _measured(probe) -> str:
    if not probe.fits:
        return "out of memory"
    return mib(int(probe.peak_bytes)) if math.isfinite(probe.peak_bytes) else "—"


def _ratio(estimate, probe) -> str:
    if not probe.fits or not math.isfinite(probe.peak_bytes) or probe.peak_bytes <= 0:
        return "—"
    return f"{estimate.total / probe.peak_bytes:.2f}"


def _json(estimates, measured, budget_bytes, fitting) -> dict[str, Any]:
    first = estimates[0]
    return {"model": first.model, "input": first.input, "mode": first.mode, "dtype": first.dtype,
            "optimizer": first.optimizer, "activation_bytes_per_sample": first.activation_bytes_per_sample,
            "measured_batches": list(first.measured_batches),
            "batches": [{"batch": e.batch, **e.parts, "total": e.total,
                         **({"measured_peak_bytes": measured[e.batch].peak_bytes if measured[e.batch].fits else None}
                            if e.batch in measured else {})} for e in estimates],
            **({"budget_bytes": budget_bytes, "largest_batch": fitting} if budget_bytes is not None else {})}
