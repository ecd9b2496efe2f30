"""``archbench list`` and ``archbench check``, and what every command that names models shares: the
``--inputs`` option and the warnings about ambiguous model names."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.markup import escape

from archbench.catalog.grammar import AmbiguousModelWarning, ModelReferenceError, code_reference
from archbench.catalog.registry import SOURCES, get_spec, list_models
from archbench.cli._common import JsonOption, SpecsOption, err, out, print_json
from archbench.errors import UsageError, quoted
from archbench.fitted import Column, fitted_table
from archbench.units import fmt_int

# What `check` builds: "all" is the specs and torchvision's zoo (their counts are stated; timm's and
# plugins' are not).
CHECK_SOURCES = {"specs": ("specs",), "torchvision": ("torchvision",), "all": ("specs", "torchvision")}
LIST_SOURCES = {source: (source,) for source in SOURCES}

InputsOption = Annotated[
    str | None,
    typer.Option("--inputs", metavar="MODULE:ATTR", show_default=False,
                 help="Input factory for models whose forward takes more than an image batch: "
                      "make_inputs(batch, input_shape, dtype, device) -> a tensor, a tuple of args or a dict of "
                      "kwargs; module:attr or ./file.py:attr."),
]


def inputs_reference(text: str | None) -> str | None:
    """The ``--inputs`` value, checked against the grammar (nothing imported yet)."""
    if text is None:
        return None
    try:
        return code_reference(text)
    except ModelReferenceError as exc:
        raise UsageError(f"--inputs {quoted(text)}: {exc}") from None


@contextlib.contextmanager
def model_name_warnings() -> Iterator[None]:
    """An ambiguous model name (a spec and a torchvision model both called ``resnet50``) as one warning line
    on stderr, saying which was taken and how to pick the other."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", AmbiguousModelWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, AmbiguousModelWarning):
                err.print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _select(pattern: str | None, source: str, specs: list[str] | None, choices: dict[str, tuple[str, ...]], on_model=None):
    if source not in choices:
        raise UsageError(f"--source {quoted(source)} is not one of: {', '.join(choices)}.")
    models = [m for part in choices[source]
              for m in list_models(pattern, source=part, extra_dirs=specs or (), on_model=on_model)]
    if not models and pattern:
        if not any(ch in pattern for ch in "*?["):
            with model_name_warnings():
                get_spec(pattern, extra_dirs=specs or ())  # an exact name: raises UnknownModelError with suggestions
        raise UsageError(f"no model matches {quoted(pattern)} (source: {quoted(source)}); patterns use shell wildcards, e.g. 'wrn-*'.")
    return models


def list_command(
    pattern: Annotated[str | None, typer.Argument(metavar="PATTERN", help="Shell-style pattern, e.g. 'wrn-*' or '*resnext*'.")] = None,
    source: Annotated[str, typer.Option("--source", metavar="SOURCE",
                                        help="specs, plugins, torchvision, timm, hf (transformers' vision model types), or all (specs, plugins and torchvision).")] = "all",
    json: JsonOption = False,
    specs: SpecsOption = None,
) -> None:
    """List every known model: name, family, source, default input, parameters, description.

    timm's models (--source timm) are counted on the meta device: the first listing of all of them takes
    minutes, later ones read the counts from a cache."""
    if source == "timm":
        with err.status("counting timm's models on the meta device ...", spinner="dots") as status:
            models = _select(pattern, source, specs, LIST_SOURCES,
                             on_model=lambda name: status.update(f"counting timm:{name} on the meta device ..."))
    else:
        models = _select(pattern, source, specs, LIST_SOURCES)
    if json:
        print_json(
            [
                {"name": m.name, "family": m.family, "source": m.source, "input": m.input_str, "params": m.params,
                 "description": m.description, "args": dict(m.args), "path": str(m.path) if m.path else None,
                 "builder": m.builder, "inputs": m.inputs}
                for m in models
            ]
        )
        return


    columns = [Column("name", shorten=28), Column("family", drop=2), Column("source", drop=1), Column("input"),
               Column("params", "right"), Column("description", text=True)]
    body = [[escape(m.name), escape(m.family), m.source, m.input_str, fmt_int(m.params), escape(m.description)]
            for m in models]
    seeds = any("seed 0" in m.description for m in models)
    caption = ("seed NNN: the source document a built-in spec was written from (one of four blog posts with the "
               "architecture's PyTorch code: WRN, the CIFAR ResNet, the MNIST CNN, ResNeXt)") if seeds else None
    out.print(fitted_table(columns, body, out.width, title=f"{len(models)} models", title_justify="left",
                           caption=caption, caption_justify="left"))


def check_command(
    pattern: Annotated[str | None, typer.Argument(metavar="PATTERN", help="Shell-style pattern; default: every model.")] = None,
    source: Annotated[str, typer.Option("--source", metavar="SOURCE", help="specs, torchvision or all (both).")] = "all",
    update: Annotated[bool, typer.Option("--update", help="Accept drifted counts: rewrite `params` in the spec files.")] = False,
    json: JsonOption = False,
    specs: SpecsOption = None,
) -> None:
    """Build each model (on the meta device) and compare its parameter count with the expected one.

    Exits 1 on any drift. `--update` writes the built counts into the spec files instead."""
    from rich.progress import Progress

    from archbench.catalog.check import accept, check_model

    models = _select(pattern, source, specs, CHECK_SOURCES)
    results = []
    with Progress(console=err, transient=True, disable=json) as progress:
        task = progress.add_task("checking", total=len(models))
        for spec in models:
            progress.update(task, description=f"checking {spec.name}")
            results.append((spec, check_model(spec)))
            progress.advance(task)
    updated = [r.model for spec, r in results if update and accept(spec, r)]
    drift = [r for _, r in results if not r.ok and r.model not in updated]

    if json:
        print_json(
            [
                {"model": r.model, "source": r.source, "expected_params": r.expected_params, "params": r.params,
                 "difference": r.difference, "ok": r.ok or r.model in updated, "updated": r.model in updated}
                for _, r in results
            ]
        )
    else:
        columns = [Column("model", shorten=24), Column("source", shorten=32, drop=1), Column("expected", "right"),
                   Column("built", "right"), Column("status", text=True)]
        body = []
        for _, r in results:
            if r.ok:
                status = "[green]OK[/]"
            elif r.model in updated:
                status = f"[yellow]UPDATED[/] ({r.difference:+,})" if r.difference is not None else "[yellow]UPDATED[/] (was none)"
            else:
                status = f"[red]DRIFT[/] ({r.difference:+,})" if r.difference is not None else "[red]NO EXPECTED COUNT[/]"
            body.append([r.model, r.source, fmt_int(r.expected_params), fmt_int(r.params), status])
        out.print(fitted_table(columns, body, out.width, title=f"parameter check: {len(results)} models",
                               title_justify="left"))
        if updated:
            err.print(f"updated the expected count of {len(updated)} spec file(s): {', '.join(updated)}")
        if drift:
            names = ", ".join(r.model for r in drift)
            err.print(f"{len(drift)} model(s) drifted: {names}. If the change is intended, accept it by re-running "
                      "this command with --update (rewrites `params` in their spec files).")
    if drift:
        raise typer.Exit(1)
