"""``archbench list`` and ``archbench check``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from archbench.cli._common import JsonOption, SpecsOption, err, fmt_int, out, print_json
from archbench.errors import UsageError
from archbench.catalog.registry import SOURCES, get_spec, list_models


def _select(pattern: str | None, source: str, specs: list[str] | None):
    if source not in SOURCES:
        raise UsageError(f"--source '{source}' is not one of: {', '.join(SOURCES)}.")
    models = list_models(pattern, source=source, extra_dirs=specs or ())
    if not models and pattern:
        if not any(ch in pattern for ch in "*?["):
            get_spec(pattern, extra_dirs=specs or ())  # an exact name: raises UnknownModelError with suggestions
        raise UsageError(f"no model matches '{pattern}' (source: {source}); patterns use shell wildcards, e.g. 'wrn-*'.")
    return models


def list_command(
    pattern: Annotated[Optional[str], typer.Argument(metavar="PATTERN", help="Shell-style pattern, e.g. 'wrn-*' or '*resnext*'.")] = None,
    source: Annotated[str, typer.Option("--source", metavar="SOURCE", help="specs, torchvision or all.")] = "all",
    json: JsonOption = False,
    specs: SpecsOption = None,
) -> None:
    """List every registered model: name, family, source, default input, parameters, description."""
    models = _select(pattern, source, specs)
    if json:
        print_json(
            [
                {"name": m.name, "family": m.family, "source": m.source, "input": m.input_str, "params": m.params,
                 "description": m.description, "args": dict(m.args), "path": str(m.path) if m.path else None}
                for m in models
            ]
        )
        return
    table = Table(title=f"{len(models)} models", title_justify="left")
    for name, kw in (("name", {"style": "bold", "no_wrap": True}), ("family", {}), ("source", {}), ("input", {}),
                     ("params", {"justify": "right"}), ("description", {"overflow": "fold"})):
        table.add_column(name, **kw)
    for m in models:
        table.add_row(m.name, m.family, m.source, m.input_str, fmt_int(m.params), m.description)
    out.print(table)


def check_command(
    pattern: Annotated[Optional[str], typer.Argument(metavar="PATTERN", help="Shell-style pattern; default: every model.")] = None,
    source: Annotated[str, typer.Option("--source", metavar="SOURCE", help="specs, torchvision or all.")] = "all",
    update: Annotated[bool, typer.Option("--update", help="Accept drifted counts: rewrite `params` in the spec files.")] = False,
    json: JsonOption = False,
    specs: SpecsOption = None,
) -> None:
    """Build each model (on the meta device) and compare its parameter count with the expected one.

    Exits 1 on any drift. `--update` writes the built counts into the spec files instead."""
    from rich.progress import Progress

    from archbench.catalog.check import accept, check_model

    models = _select(pattern, source, specs)
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
        table = Table(title=f"parameter check: {len(results)} models", title_justify="left")
        for name in ("model", "source", "expected", "built", "status"):
            table.add_column(name, justify="right" if name in ("expected", "built") else "left")
        for _, r in results:
            if r.ok:
                status = "[green]OK[/]"
            elif r.model in updated:
                status = f"[yellow]UPDATED[/] ({r.difference:+,})" if r.difference is not None else "[yellow]UPDATED[/] (was none)"
            else:
                status = f"[red]DRIFT[/] ({r.difference:+,})" if r.difference is not None else "[red]NO EXPECTED COUNT[/]"
            table.add_row(r.model, r.source, fmt_int(r.expected_params), fmt_int(r.params), status)
        out.print(table)
        if updated:
            err.print(f"updated the expected count of {len(updated)} spec file(s): {', '.join(updated)}")
        if drift:
            names = ", ".join(r.model for r in drift)
            err.print(f"{len(drift)} model(s) drifted: {names}. If the change is intended, accept it by re-running "
                      "this command with --update (rewrites `params` in their spec files).")
    if drift:
        raise typer.Exit(1)
