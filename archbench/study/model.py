"""A study as data: its models, the grid of cells, the options, and the defaults of a comparison that the
CLI and the Python API share (no torch import). Study files are read in :mod:`archbench.study.files`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from archbench.catalog.grammar import ModelReferenceError, split_name
from archbench.errors import StudyError, UnknownModelError, UsageError, quoted
from archbench.parsing import InputShape, format_input, parse_input
from archbench.rows import MODES
from archbench.timing.options import DEFAULT_MAX_SAMPLES, MeasureOptions

# The defaults of a comparison, one definition for ``archbench compare``, ``archbench bench``, study files and
# the Python API (``archbench.compare``, ``archbench.bench``).
DEFAULT_DEVICES: tuple[str, ...] = ("cpu",)
DEFAULT_BATCHES: tuple[int, ...] = (1, 8)  # compare and study files
BENCH_BATCHES: tuple[int, ...] = (1,)  # bench: one batch unless asked
DEFAULT_MODES: tuple[str, ...] = MODES  # infer and train
DEFAULT_DTYPES: tuple[str, ...] = ("fp32",)
DEFAULT_INTERLEAVE = True  # several models: timed in alternating rounds at each grid point

MEASURE_KEYS = ("max_time_s", "precision", "min_samples", "max_samples")  # StudyOptions.measure's fields
OPTION_KEYS = (*MEASURE_KEYS, "channels_last", "compiled", "threads", "interleave", "memory_limit", "max_batch")


@dataclass(frozen=True)
class Grid:
    """The cells of a study. ``inputs=None`` times each model at its own default input;
    ``per_device`` replaces grid values on one device (``{"cuda": {"batches": (1, 8, 32)}}``)."""

    devices: tuple[str, ...] = DEFAULT_DEVICES  # may hold "auto", resolved when the study runs
    inputs: tuple[InputShape, ...] | None = None
    batches: tuple[int | str, ...] = DEFAULT_BATCHES  # "max": the largest batch that fits (archbench.sweep.maxbatch)
    modes: tuple[str, ...] = DEFAULT_MODES
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    per_device: Mapping[str, Mapping[str, tuple]] = field(default_factory=dict, hash=False)
    backends: tuple[str, ...] | None = None  # None: compile when options.compiled, else eager (archbench.timing.backends)

    def for_device(self, device: str) -> Grid:
        """This grid with ``device``'s own values (``[grid.<device>]``) applied."""
        own = self.per_device.get(device) or self.per_device.get(device.split(":", 1)[0], {})  # cuda:1 -> [grid.cuda]
        return replace(self, devices=(device,), per_device={}, **dict(own))


@dataclass(frozen=True)
class StudyOptions:
    """How each cell is measured: ``measure`` (the stopping rules, :class:`MeasureOptions`, checked there)
    and what the sweep sets up around it (see :func:`archbench.sweep.run.run_sweep`)."""

    measure: MeasureOptions = MeasureOptions()
    channels_last: bool = False
    compiled: bool = False
    threads: int | None = None
    interleave: bool = DEFAULT_INTERLEAVE  # models sharing a grid point timed in alternating rounds (archbench.sweep.interleave)
    memory_limit: int | None = None  # batch "max": bytes the search's worker may use (archbench.sweep.maxbatch)
    max_batch: int | None = None  # batch "max": never searched above

    def to_dict(self) -> dict[str, Any]:
        """The options as a study file's ``[options]`` table (and ``results.json``): flat, the measurement
        options first; ``max_samples`` only when it is not the default (older reports compare equal)."""
        measure = self.measure
        flat = {"max_time_s": measure.max_time_s, "precision": measure.precision, "min_samples": measure.min_samples}
        if measure.max_samples != DEFAULT_MAX_SAMPLES:
            flat["max_samples"] = measure.max_samples
        return {**flat, **{k: getattr(self, k) for k in OPTION_KEYS if k not in MEASURE_KEYS}}

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> StudyOptions:
        """Inverse of :meth:`to_dict` (unknown keys ignored); a wrong measurement option raises
        :class:`~archbench.arguments.ArgumentError` (from :class:`MeasureOptions`)."""
        measure = MeasureOptions(**{k: table[k] for k in MEASURE_KEYS if k in table})
        return cls(measure, **{k: table[k] for k in OPTION_KEYS if k in table and k not in MEASURE_KEYS})


@dataclass(frozen=True)
class StudyModel:
    """One model of a study: ``name`` (what its rows and the report call it), the ``model`` reference it is
    built from, its builder's ``args`` and an input factory reference ``inputs``."""

    name: str
    model: str
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    inputs: str | None = None

    @property
    def plain(self) -> bool:
        """Named by its reference, with its own arguments and images as inputs."""
        return self.model == self.name and not self.args and self.inputs is None


@dataclass(frozen=True)
class Study:
    """A named comparison: models (their names; ``entries`` says how each is built), grid, options,
    reference model (``models[0]`` unless set)."""

    name: str
    models: tuple[str, ...]
    grid: Grid = Grid()
    options: StudyOptions = StudyOptions()
    title: str = ""
    reference: str = ""
    path: Path | None = None
    entries: tuple[StudyModel, ...] = ()  # default: each name is its own reference
    executor: Mapping[str, Any] = field(default_factory=dict, hash=False)  # [executor] (archbench.execute.executors)
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)  # [targets.NAME]: where cells run

    def __post_init__(self) -> None:
        if not self.reference and self.models:
            object.__setattr__(self, "reference", self.models[0])
        if not self.title:
            object.__setattr__(self, "title", " vs ".join(self.models))
        if not self.entries:
            object.__setattr__(self, "entries", tuple(StudyModel(m, m) for m in self.models))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in ``results.json``; :func:`study_from_dict` reads it back)."""
        grid = self.grid
        return {
            "name": self.name,
            "title": self.title,
            "models": list(self.models),
            "reference": self.reference,
            "path": str(self.path) if self.path else None,
            "grid": {
                "devices": list(grid.devices),
                "inputs": [format_input(s) for s in grid.inputs] if grid.inputs is not None else None,
                "batches": list(grid.batches),
                "modes": list(grid.modes),
                "dtypes": list(grid.dtypes),
                **({"backends": list(grid.backends)} if grid.backends is not None else {}),
                "per_device": {d: _jsonable_grid(v) for d, v in grid.per_device.items()},
            },
            "options": self.options.to_dict(),
            **self._model_sources(),
            **({"executor": dict(self.executor)} if self.executor else {}),
            **({"targets": {k: dict(v) for k, v in self.targets.items()}} if self.targets else {}),
        }

    def _model_sources(self) -> dict[str, Any]:
        """``{"model_sources": {name: {model, args, inputs}}}`` for the models not named by their reference
        alone (nothing when there are none, so older reports compare equal)."""
        sources = {e.name: {"model": e.model, "args": dict(e.args), "inputs": e.inputs} for e in self.entries
                   if not e.plain}
        return {"model_sources": sources} if sources else {}


def _jsonable_grid(values: Mapping[str, tuple]) -> dict[str, list]:
    return {k: [format_input(s) for s in v] if k == "inputs" else list(v) for k, v in values.items()}


def study_from_dict(data: Mapping[str, Any]) -> Study:
    """Inverse of :meth:`Study.to_dict`."""
    g = data["grid"]
    per_device = {
        d: {k: tuple(parse_input(s) for s in v) if k == "inputs" else tuple(v) for k, v in vals.items()}
        for d, vals in (g.get("per_device") or {}).items()
    }
    grid = Grid(
        devices=tuple(g["devices"]),
        inputs=tuple(parse_input(s) for s in g["inputs"]) if g.get("inputs") is not None else None,
        batches=tuple(g["batches"]),
        modes=tuple(g["modes"]),
        dtypes=tuple(g["dtypes"]),
        per_device=per_device,
        backends=tuple(g["backends"]) if g.get("backends") is not None else None,
    )
    sources = data.get("model_sources") or {}
    entries = tuple(StudyModel(n, sources[n]["model"], sources[n].get("args") or {}, sources[n].get("inputs"))
                    if n in sources else StudyModel(n, n) for n in data["models"])
    return Study(
        name=data["name"],
        models=tuple(data["models"]),
        grid=grid,
        options=StudyOptions.from_dict(data.get("options") or {}),
        title=data.get("title", ""),
        reference=data.get("reference", ""),
        path=Path(data["path"]) if data.get("path") else None,
        entries=entries,
        executor=data.get("executor") or {},
        targets=data.get("targets") or {},
    )


def resolve_models(study: Study, extra_dirs: Iterable[str] = ()):
    """The :class:`~archbench.catalog.spec.ModelSpec` of each model, under its study name, with its args and
    input factory (and the grid's first input as its default when it states none); a reference in a study file
    that names nothing is a :class:`StudyError` naming the file
    and the ``models`` key (imports the code a reference names, torchvision for zoo names)."""
    from dataclasses import replace as with_fields

    from archbench.catalog.refs import input_is_a_default, resolve_model

    specs = []
    for entry in study.entries:
        try:
            spec = resolve_model(entry.model, extra_dirs=extra_dirs, inputs=entry.inputs)
        except (UnknownModelError, ModelReferenceError) as exc:
            if study.path is None:
                raise
            raise StudyError(f"{study.path}: models: {exc}") from exc
        # Arguments from the command line (no study file) are blamed as given per run (--set); a file's
        # are the model's own.
        spec = spec.with_args(entry.args, per_run=study.path is None)
        if study.grid.inputs and input_is_a_default(spec):  # counted at the study's input, not at a guessed 224x224
            spec = with_fields(spec, input=study.grid.inputs[0])
        written = spec.reference or (entry.model if entry.name != entry.model else "")
        specs.append(with_fields(spec, name=entry.name, reference=written))
    return specs


def adhoc_study(
    models: Iterable[str],
    *,
    devices: Iterable[str] = DEFAULT_DEVICES,
    inputs: Iterable[InputShape] | None = None,
    batches: Iterable[int] = DEFAULT_BATCHES,
    modes: Iterable[str] = DEFAULT_MODES,
    dtypes: Iterable[str] = DEFAULT_DTYPES,
    reference: str | None = None,
    options: StudyOptions = StudyOptions(),
    title: str = "",
    name: str | None = None,
    args: Mapping[str, Any] | None = None,
    model_inputs: str | None = None,
) -> Study:
    """A study from command-line values; its name (the report folder) joins the model names with ``-vs-``.
    ``args`` (builder arguments) and ``model_inputs`` (an input factory reference) apply to every model."""
    named = _named_models(models)
    models = tuple(named)
    if reference and reference not in models:
        raise UsageError(f"--reference {quoted(reference)} is not one of the models compared ({', '.join(models)}).")
    grid = Grid(tuple(devices), tuple(inputs) if inputs is not None else None, tuple(batches), tuple(modes), tuple(dtypes))
    study_name = name or "-vs-".join(_folder_label(m) for m in models)
    entries = tuple(StudyModel(m, ref, dict(args or {}), model_inputs) for m, ref in named.items())
    return Study(study_name, models, grid, options, title, reference or "", None, entries)


def _named_models(models: Iterable[str]) -> dict[str, str]:
    """``{name: reference}`` of the models as given: ``NAME=REFERENCE`` or a reference (its own name); the same
    model given twice counts once, two models under one name are an error."""
    named: dict[str, str] = {}
    for given in models:
        name, ref = split_name(given)
        name = name or ref
        if named.get(name, ref) != ref:
            raise UsageError(f"two models are named {quoted(name)} ({named[name]} and {ref}): give each its own name, "
                             f"e.g. {name}-2={ref}.")
        named[name] = ref
    return named


def _folder_label(model: str) -> str:
    """A model's part of a report folder's name: ``./nets/mynet.py:MyNet`` -> ``mynet.MyNet``,
    ``timm:convnext_tiny`` -> ``timm.convnext_tiny``."""
    where, sep, attr = model.rpartition(":")
    if sep:
        model = f"{Path(where).stem if where.endswith('.py') else where}.{attr}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._-") or "model"

