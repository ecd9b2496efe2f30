"""Model references: one grammar wherever a model is named — the CLI's MODEL arguments, study files, a
spec file's ``builder`` and the Python API — and one resolver, :func:`resolve_model`.

==========================  ===========================================================================
``resnext-50``              a spec (built in, ``--specs DIR`` or ``ARCHBENCH_SPECS``)
``mynet``                   a plugin family (entry-point group ``archbench.families``), default arguments
``resnet50``                torchvision's classification zoo
``tv:resnet50``             torchvision, explicitly (``plugin:mynet`` likewise)
``timm:convnext_tiny``      timm (an optional extra), ``pretrained=False``: nothing is downloaded
``hf:vit``                  Hugging Face transformers (an optional extra), from a config: a model type,
                            ``hf:org/name`` in the local cache or ``hf:./folder`` with a config.json; never a
                            download (:mod:`archbench.catalog.models.hf_zoo`)
``mypkg.models:MyNet``      an importable object: an ``nn.Module`` subclass, a factory returning one, or an
                            instance (never changed: every build is a copy); the current directory is
                            importable, as for ``python -m``
``./nets/mynet.py:MyNet``   the same, loaded from a file (any path ending in ``.py``), nothing installed
``mine=./nets/mynet.py:Net`` any of the above under a name of your choosing (``NAME=REFERENCE``): the name
                            its rows, titles and report folders use
==========================  ===========================================================================

A plain name is looked up in that order; a name found in more than one place takes the first and says so
with an :class:`AmbiguousModelWarning` naming the prefix that picks the other. Parsing imports nothing;
user code is imported only to resolve or build a model that names it. A failure inside user code (a
syntax error, an exception while importing or building) is located to the file and line in the user's
code where it happened.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from archbench.catalog.grammar import (
    AmbiguousModelWarning,
    Kind,
    ModelReferenceError,
    Reference,
    absolute_reference,
    code_reference,
    describe,
    parse_reference,
    split_name,
)
from archbench.catalog.loading import load_inputs_factory, load_model_object
from archbench.catalog.spec import ModelSpec, load_catalog
from archbench.errors import UnknownModelError, quoted


def resolve_model(ref: str, *, extra_dirs: Iterable[str | Path] = (), args: Mapping[str, Any] | None = None,
                  inputs: str | None = None) -> ModelSpec:
    """The :class:`ModelSpec` a reference names, with ``args`` merged into its builder arguments and
    ``inputs`` (an input factory reference) set. Code it names is imported now, so a bad reference fails
    before anything runs; a model is not built. ``NAME=REFERENCE`` names the model ``NAME`` and keeps the
    reference as written in the spec's ``reference``."""
    name, ref = split_name(ref)
    reference = parse_reference(ref)
    spec = _RESOLVERS[reference.kind](reference, extra_dirs)
    if name is not None:
        spec = replace(spec, name=name, reference=ref)
    if inputs is not None:
        spec = replace(spec, inputs=code_reference(inputs))
    if spec.inputs is not None:
        load_inputs_factory(spec.inputs)
    return spec.with_args(args)


def _resolve_name(reference: Reference, extra_dirs: Iterable[str | Path]) -> ModelSpec:
    from archbench.catalog import plugins

    name = reference.target
    catalog = load_catalog(extra_dirs)
    found: list[tuple[ModelSpec, str, str]] = []  # (spec, what it is, the prefix that picks it)
    if name in catalog:
        found.append((catalog[name], f"the spec ({catalog[name].path or 'built in'})", ""))
    if name in plugins.names():
        plugin = plugins.spec(name)
        found.append((plugin, f"the plugin family ({plugin.source.removeprefix('plugin:')})", "plugin:"))
    if name.isidentifier() and name in _torchvision_names():  # torchvision's names are identifiers
        found.append((_torchvision_spec(name), "torchvision's model", "tv:"))
    if not found:
        raise UnknownModelError(name, _suggestions(name, catalog))
    (spec, taken, _), others = found[0], found[1:]
    if others:
        picks = "; ".join(f"write {prefix}{name} for {_short(what)}" for _, what, prefix in others)
        also = " and ".join(what for _, what, _ in others)
        warnings.warn(AmbiguousModelWarning(f"{quoted(name)} names {taken} and {also}: {_short(taken)} is taken; {picks}."),
                      stacklevel=3)
    return spec


def _short(what: str) -> str:
    return what.split(" (")[0]


def _suggestions(name: str, catalog: Mapping[str, ModelSpec]) -> list[str]:
    from archbench.catalog import plugins
    from archbench.catalog.models import timm_zoo

    close = difflib.get_close_matches(name, [*catalog, *plugins.names(), *_torchvision_names()], n=3, cutoff=0.6)
    if timm_zoo.installed() and name in timm_zoo.names():
        close.insert(0, f"timm:{name}")
    return close


def _torchvision_names() -> tuple[str, ...]:
    from archbench.catalog.models import torchvision_zoo

    return torchvision_zoo.names()


def _torchvision_spec(name: str) -> ModelSpec:
    from archbench.catalog.models import torchvision_zoo

    return torchvision_zoo.spec(name)


def _resolve_tv(reference: Reference, extra_dirs) -> ModelSpec:
    name = reference.target
    if name not in _torchvision_names():
        close = difflib.get_close_matches(name, _torchvision_names(), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(f'tv:{c}' for c in close)}?" if close else ""
        raise ModelReferenceError(f"torchvision has no classification model {quoted(name)}.{hint}")
    return replace(_torchvision_spec(name), name=reference.text)


def _resolve_timm(reference: Reference, extra_dirs) -> ModelSpec:
    from archbench.catalog.models import timm_zoo

    return timm_zoo.spec(reference.target, name=reference.text)


def _resolve_hf(reference: Reference, extra_dirs) -> ModelSpec:
    from archbench.catalog.models import hf_zoo

    return hf_zoo.spec(reference.target, name=reference.text)


def _resolve_plugin(reference: Reference, extra_dirs) -> ModelSpec:
    from archbench.catalog import plugins

    if reference.target not in plugins.names():
        known = ", ".join(plugins.names()) or "none is installed"
        raise ModelReferenceError(f"no plugin family {quoted(reference.target)} (entry-point group "
                                  f"{plugins.GROUP}); plugin families: {known}.")
    return replace(plugins.spec(reference.target), name=reference.text)


def _resolve_code(reference: Reference, extra_dirs) -> ModelSpec:
    from archbench.catalog.source import DEFAULT_INPUT

    obj = load_model_object(reference.text)  # errors quote the reference as the user wrote it
    return ModelSpec(name=reference.text, family="python", input=DEFAULT_INPUT, description=describe(obj),
                     source="python", builder=absolute_reference(reference, None))


_RESOLVERS: dict[Kind, Callable[[Reference, Any], ModelSpec]] = {
    "name": _resolve_name, "tv": _resolve_tv, "timm": _resolve_timm, "hf": _resolve_hf, "plugin": _resolve_plugin,
    "module": _resolve_code, "file": _resolve_code,
}


def input_is_a_default(spec: ModelSpec) -> bool:
    """Whether ``spec``'s input is archbench's guess (3x224x224) rather than the model's own: a model named
    by its code or a plugin family states none (a spec file, torchvision and timm do)."""
    return spec.source == "python" or spec.source.startswith("plugin:")
