"""Model specs: frozen data loaded from TOML files (no torch import).

A spec file describes one model::

    name = "wrn-40-10"                  # kebab-case, unique
    family = "wrn"                      # a registered builder family
    description = "Wide ResNet 40-10 (Zagoruyko & Komodakis 2016, CIFAR)"
    input = "3x32x32"                   # default input, CxHxW
    params = 55_841_754                 # expected parameter count (`archbench check`)
    # overrides = true                  # only in a user spec that replaces a built-in one

    [args]                              # keyword arguments of the family's builder
    depth = 40
    widen_factor = 10

Instead of ``family``, a spec may name a Python ``builder`` — any model reference but a plain name
(``mypkg.models:MyNet``, ``./mynet.py:build`` relative to the spec file, ``timm:convnext_tiny``), see
:mod:`archbench.catalog.refs` — and an input factory ``inputs = "mypkg.data:make_inputs"``; nothing is
imported until the model is built.

Built-in specs ship with the package; users add directories with ``--specs DIR`` or the
``ARCHBENCH_SPECS`` path list.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from archbench.errors import PATH_ECHO_LIMIT, SpecError, UsageError, WorkUnitError, quoted
from archbench.locations import os_reason
from archbench.parsing import InputShape, format_input, parse_input, read_toml_file

SPECS_ENV = "ARCHBENCH_SPECS"
_NAME_RE = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")
_KEYS = {"name", "family", "builder", "inputs", "description", "input", "params", "overrides", "args"}
_REQUIRED = ("name", "description", "input")


@dataclass(frozen=True)
class ModelSpec:
    """What to build (a family or a builder reference, and its arguments), on what input by default, and
    how many parameters to expect. Frozen, hashable data: nothing here holds a Python object."""

    name: str
    family: str  # a registered family; "python", "timm" or "torchvision" for a builder reference
    input: InputShape
    description: str = ""
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    params: int | None = None
    source: str = "specs"  # "specs" (built in), "user" (--specs / ARCHBENCH_SPECS), "torchvision", "timm", "python", "plugin:<dist>"
    path: Path | None = None
    overrides: bool = False
    builder: str | None = None  # a model reference to build with instead of the family (tv:, timm:, module:attr, file.py:attr)
    inputs: str | None = None  # an input factory reference (module:attr, file.py:attr); None: images
    set_args: Mapping[str, Any] = field(default_factory=dict, hash=False)  # the args given per run (--set, a study's args)
    reference: str = ""  # the reference as the user wrote it, when NAME=REFERENCE gave the model another name

    @property
    def input_str(self) -> str:
        return format_input(self.input)

    def build(self, device: str = "cpu"):
        """A fresh model from the spec's builder (see :func:`archbench.catalog.registry.build_model`)."""
        from archbench.catalog.registry import build_model

        return build_model(self, device=device)

    def inputs_factory(self):
        """``make_inputs(batch, input_shape, dtype, device)`` named by ``inputs`` (imported now), or ``None``
        for an image model (the sweep makes random images)."""
        if self.inputs is None:
            return None
        from archbench.catalog.loading import load_inputs_factory

        return load_inputs_factory(self.inputs)

    def with_args(self, overrides: Mapping[str, Any] | None, per_run: bool = True) -> ModelSpec:
        """A copy with ``overrides`` merged into the builder arguments (``None`` values are dropped so they
        never override a default, as timm's ``create_model`` does); errors blame them as given per run
        (``per_run=False``: as the model's own, e.g. a study file's). An ``hf:`` model's default input follows
        the ``image_size`` and ``num_channels`` set."""
        extra = {k: v for k, v in (overrides or {}).items() if v is not None}
        if not extra:
            return self
        set_args = {**self.set_args, **extra} if per_run else self.set_args
        spec = replace(self, args={**self.args, **extra}, set_args=set_args)
        if spec.builder is not None and spec.builder.startswith("hf:"):
            from archbench.catalog.models.hf_zoo import input_after

            spec = replace(spec, input=input_after(spec.input, extra))
        return spec


def builtin_specs_dir() -> Path:
    """The specs that ship with archbench: ``archbench/_specs`` in a wheel, ``<repo>/specs`` in a checkout."""
    packaged = Path(__file__).resolve().parent.parent / "_specs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "specs"


def user_spec_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """``ARCHBENCH_SPECS`` (an ``os.pathsep``-separated list) followed by the ``--specs`` directories."""
    env = [p for p in os.environ.get(SPECS_ENV, "").split(os.pathsep) if p.strip()]
    dirs = [Path(p).expanduser() for p in [*env, *extra]]
    for d in dirs:
        try:
            found = d.is_dir()
        except OSError as exc:  # a name too long, a folder that cannot be searched
            raise UsageError(f"spec directory {quoted(d, PATH_ECHO_LIMIT)} cannot be read: {os_reason(exc)} (from "
                             f"--specs or {SPECS_ENV}); give a folder of spec files.") from None
        if not found:
            raise UsageError(f"spec directory {quoted(d, PATH_ECHO_LIMIT)} does not exist (from --specs or {SPECS_ENV}).")
    return dirs


def load_spec_file(path: Path, source: str = "specs") -> ModelSpec:
    """Load and validate one spec file; errors name the file (and line, for TOML syntax)."""
    return spec_from_mapping(read_toml_file(path, "spec file", SpecError), path=path, source=source)


def spec_from_mapping(data: Mapping[str, Any], path: Path | None = None, source: str = "specs") -> ModelSpec:
    where = str(path) if path else "spec"
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; a spec may contain {', '.join(sorted(_KEYS))}.")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise SpecError(f"{where}: missing required key(s) {', '.join(missing)}.")
    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SpecError(f"{where}: name {quoted(name)} is not kebab-case (lower-case letters, digits and dashes).")
    if ("family" in data) == ("builder" in data):
        raise SpecError(f"{where}: model {quoted(name)}: give either family (a registered builder family) or builder "
                        "(a Python reference such as \"mypkg.models:MyNet\"), not both or neither.")
    for key in ("family", "builder", "inputs", "description", "input"):
        if key in data and not isinstance(data[key], str):
            raise SpecError(f"{where}: model {quoted(name)}: {key} must be a string, got {data[key]!r}.")
    try:
        shape = parse_input(data["input"], option="input")
    except UsageError as exc:
        raise SpecError(f"{where}: model {quoted(name)}: {exc}") from exc
    params = data.get("params")
    if params is not None and (not isinstance(params, int) or isinstance(params, bool) or params < 0):
        raise SpecError(f"{where}: model {quoted(name)}: params must be a non-negative integer, got {params!r}.")
    args = data.get("args", {})
    if not isinstance(args, dict):
        raise SpecError(f"{where}: model {quoted(name)}: [args] must be a table of keyword arguments.")
    overrides = data.get("overrides", False)
    if not isinstance(overrides, bool):
        raise SpecError(f"{where}: model {quoted(name)}: overrides must be true or false.")
    from archbench.catalog.grammar import family_of

    builder = _reference(where, name, "builder", data, path)
    return ModelSpec(
        name=name,
        family=family_of(builder) if builder is not None else data["family"],
        input=shape,
        description=data["description"],
        args=dict(args),
        params=params,
        source=source,
        path=path,
        overrides=overrides,
        builder=builder,
        inputs=_reference(where, name, "inputs", data, path),
    )


def _reference(where: str, name: str, key: str, data: Mapping[str, Any], path: Path | None) -> str | None:
    """The spec's ``builder`` or ``inputs`` reference, a file path in it made absolute (relative to the spec
    file); checked against the grammar, not imported."""
    from archbench.catalog.grammar import ModelReferenceError, builder_reference, code_reference

    if key not in data:
        return None
    parse = builder_reference if key == "builder" else code_reference
    try:
        return parse(data[key], base_dir=path.parent if path else None)
    except ModelReferenceError as exc:
        raise SpecError(f"{where}: model {quoted(name)}: {key}: {exc}") from None


def _load_dir(directory: Path, source: str) -> list[ModelSpec]:
    return [load_spec_file(p, source) for p in sorted(directory.glob("*.toml"))]


def load_catalog(extra_dirs: Iterable[str | Path] = ()) -> dict[str, ModelSpec]:
    """Every spec by name: built-in ones, then user directories (which may replace a built-in spec only
    when the user spec says ``overrides = true``)."""
    catalog: dict[str, ModelSpec] = {}
    for spec in _load_dir(builtin_specs_dir(), "specs"):
        _add(catalog, spec, builtin=True)
    loaded = {builtin_specs_dir().resolve()}
    for directory in user_spec_dirs(extra_dirs):
        if directory.resolve() in loaded:  # e.g. --specs ./specs in a checkout: the same files, not duplicates
            continue
        loaded.add(directory.resolve())
        for spec in _load_dir(directory, "user"):
            _add(catalog, spec, builtin=False)
    return catalog


def _add(catalog: dict[str, ModelSpec], spec: ModelSpec, builtin: bool) -> None:
    previous = catalog.get(spec.name)
    if previous is None:
        catalog[spec.name] = spec
    elif not builtin and previous.source == "specs" and spec.overrides:
        catalog[spec.name] = spec
    elif not builtin and previous.source == "specs":
        raise SpecError(
            f"{spec.path}: model {quoted(spec.name, PATH_ECHO_LIMIT)} has the name of a built-in spec ({previous.path}). "
            "Rename it, or add `overrides = true` to replace the built-in one."
        )
    else:
        raise SpecError(f"{spec.path}: model {quoted(spec.name, PATH_ECHO_LIMIT)} is already defined in {previous.path}; names must be "
                        "unique.")


def set_expected_params(spec: ModelSpec, params: int) -> None:
    """Rewrite the ``params = ...`` line of a spec file (how ``archbench check --update`` accepts a change).

    Only that line changes, so comments and layout survive (tomllib cannot write TOML)."""
    if spec.path is None:
        raise SpecError(f"model {quoted(spec.name, PATH_ECHO_LIMIT)} has no spec file to update (source: {spec.source}).")
    text = spec.path.read_text(encoding="utf-8")
    pattern = re.compile(r"^(params\s*=\s*)[^#\n]*?(\s*#.*)?$", re.MULTILINE)  # the value; a trailing comment stays
    head, sep, tail = text.partition("\n[")  # only the top-level table, never a key inside [args]
    if pattern.search(head):
        head = pattern.sub(lambda m: f"{m.group(1)}{params:_}{m.group(2) or ''}", head, count=1)
    else:
        head = head.rstrip("\n") + f"\nparams = {params:_}\n"
    spec.path.write_text(head + sep + tail, encoding="utf-8")


def model_to_json(source: Any) -> dict[str, Any]:
    """A model source as data: every field of a :class:`ModelSpec`. Anything else (a module or factory
    held by this process) cannot be rebuilt elsewhere: :class:`WorkUnitError`."""
    from archbench.catalog.spec import ModelSpec

    if not isinstance(source, ModelSpec):
        raise WorkUnitError(
            f"model {quoted(source.name, PATH_ECHO_LIMIT)} is a Python object held by this process ({type(source).__name__}), which "
            "cannot be sent to a worker process or a cluster job. Name it by a reference instead (a spec name, "
            "\"mypkg.models:MyNet\" or \"./nets/mynet.py:MyNet\"), or measure it in this process.")
    data = {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}
    data["input"] = format_input(source.input)
    data["path"] = str(source.path) if source.path is not None else None
    data["args"], data["set_args"] = dict(source.args), dict(source.set_args)
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise WorkUnitError(f"model {quoted(source.name, PATH_ECHO_LIMIT)}: its builder arguments {dict(source.args)} cannot be written as "
                            f"JSON ({exc}), so the model cannot be rebuilt in another process.") from None
    return data


def model_from_json(data: Mapping[str, Any]):
    """The :class:`ModelSpec` :func:`model_to_json` wrote."""
    from archbench.catalog.spec import ModelSpec

    values = dict(data)
    values["input"] = parse_input(values["input"])
    values["path"] = Path(values["path"]) if values.get("path") else None
    return ModelSpec(**values)
