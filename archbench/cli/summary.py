"""``archbench summary``: one model at one input and batch — the layer table, MACs/FLOPs (forward and
backward), parameter and activation memory, counter coverage and a cross-check.

Thin: parse the options with the shared parsers, call :func:`archbench.costs.summary.summarize`, render it
with rich (default), as JSON (``--json``) or as GitHub-flavoured Markdown (``--markdown``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from archbench.cli._common import JsonOption, SetOption, SpecsOption, err, out, print_json
from archbench.cli.catalog import InputsOption, inputs_reference, model_name_warnings
from archbench.errors import UsageError, quoted
from archbench.parsing import format_input, parse_input, parse_positive_ints, parse_set


def summary_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", show_default=False, help=(
        "Model name or reference: resnext-50, resnet50, timm:NAME, mypkg.models:MyNet, ./file.py:MyNet."))],
    input: Annotated[str | None, typer.Option("--input", metavar="CxHxW", show_default=False,
                                                 help="Input CxHxW; default: the model's own.")] = None,
    batch: Annotated[str, typer.Option("--batch", metavar="N", help="Batch size (counts are for the whole batch).")] = "1",
    depth: Annotated[int, typer.Option("--depth", metavar="D", help="Deepest layer level shown (0: no layer table).")] = 3,
    set_: SetOption = None,
    inputs: InputsOption = None,
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", help="cpu, cuda or cuda:N.")] = "cpu",
    json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print GitHub-flavoured Markdown to stdout.")] = False,
    specs: SpecsOption = None,
) -> None:
    """Layer table, MACs/FLOPs (forward and backward), parameter and activation memory of one model.

    MACs (1 multiply-accumulate = 1 MAC = 2 FLOPs) of convolutions, matrix products and attention, as
    torchvision's published counts; "MACs with norm" adds normalisation and pooling, as fvcore and timm;
    backward FLOPs over the same ops; activation memory is measured. A model that does not run on the
    input gets an error naming the module where it failed."""
    shape = parse_input(input) if input is not None else None
    batches = parse_positive_ints(batch, "--batch")
    if len(batches) != 1:
        raise UsageError(f"--batch {quoted(batch)} must be one batch size for a summary (use `archbench bench` for several).")
    if depth < 0:
        raise UsageError(f"--depth {depth} must be 0 or more (0 shows no layer table).")
    if json and markdown:
        raise UsageError("--json and --markdown are exclusive: choose one output format.")
    overrides = parse_set(set_)
    inputs_ref = inputs_reference(inputs)
    from archbench.catalog.refs import resolve_model
    from archbench.parsing import parse_device
    from archbench.timing.devices import require_device

    if "," in device:
        raise UsageError(f"--device {quoted(device)} must be one device for a summary: cpu, cuda or cuda:N.")
    devices = [parse_device(device)]
    require_device(devices[0])
    with model_name_warnings():
        spec = resolve_model(model, extra_dirs=specs or (), args=overrides, inputs=inputs_ref)
    from archbench.costs.summary import summarize  # imports torch

    with err.status(f"summarising {spec.name} at {format_input(shape or spec.input)}, batch {batches[0]} ...",
                    spinner="dots"):
        factory = spec.inputs_factory()
        model_inputs = factory(batches[0], shape or spec.input, "fp32", devices[0]) if factory is not None else None
        summary = summarize(spec, shape, batches[0], devices[0], overrides, depth, inputs=model_inputs)

    if json:
        from archbench.costs.summary import summary_to_json

        print_json(summary_to_json(summary))
    elif markdown:
        out.file.write(summary.to_markdown())
        out.file.flush()
    else:
        out.print(summary)
