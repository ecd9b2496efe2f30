"""Study files: what ``archbench compare`` measures, as frozen data loaded from TOML (no torch import).

A study names the models, the grid of cells and the measurement options::

    title = "WRN-40-10 against ResNeXt-50"
    models = ["wrn-40-10", "resnext-50"]  # model references: names, tv:/timm:, module:attr, ./file.py:attr
    reference = "wrn-40-10"             # optional: relative speeds are against it (default: first model)

    [grid]
    devices = "auto"                    # "cpu", ["cpu", "cuda"], or "auto" (CPU, plus CUDA when present)
    inputs = ["3x32x32", "3x64x64"]     # optional: default is each model's own input
    batches = [1, 8]
    modes = ["infer", "train"]
    dtypes = ["fp32"]
    backends = ["eager"]                # optional: eager, compile, compile:max-autotune, export, onnxruntime

    [grid.cuda]                         # optional per-device changes to the grid (batches, inputs, modes, dtypes)
    batches = [1, 8, 32, 128]

    [options]                           # all optional
    max_time_s = 8.0                    # per-cell time budget, warm-up included
    precision = 0.03                    # stop once the 95% CI of the median is within 3% of it
    min_samples = 5
    channels_last = false
    compiled = false
    threads = 2                         # torch intra-op threads (default: torch's current count)
    interleave = true                   # time the models of each grid point in alternating rounds (paired ratios)

A model may also be a table: ``{ model = "./nets/mynet.py:MyNet", name = "mynet-w64", args = { width = 64 },
inputs = "mypkg.data:make_inputs" }`` — ``name`` (default: the reference) is what its rows and the report
call it, ``args`` its builder's keyword arguments, ``inputs`` an input factory; a file path is relative to
the study file.

The study's name is the file's stem (``specs/studies/default.toml`` -> ``default``); its report goes to
``reports/<name>/``. Every validation error names the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from archbench.catalog.refs import ModelReferenceError, builder_reference, code_reference, parse_reference, split_name
from archbench.errors import StudyError, UnknownModelError, UsageError
from archbench.parsing import InputShape, format_input, parse_input, read_toml_file
from archbench.resources import threads_problem
from archbench.rows import DTYPES, MODES
from archbench.schemas import (
    OMIT,
    Field,
    anything,
    boolean,
    choice,
    fraction,
    input_shape,
    integer,
    list_of,
    mapping_of,
    number,
    optional,
    record,
    text,
)
from archbench.timing.options import DEFAULT_MAX_TIME_S, DEFAULT_MIN_SAMPLES, DEFAULT_PRECISION, MeasureOptions

DEVICE_CHOICES = ("cpu", "cuda")
MODE_CHOICES = ("infer", "train")  # as archbench.sweep.run.MODES (not imported: the sweep module is heavier)
DTYPE_CHOICES = ("fp32", "bf16", "fp16")
DEFAULT_STUDY = "default"

_TOP_KEYS = ("title", "models", "reference", "grid", "options", "executor", "targets")
_GRID_KEYS = ("devices", "inputs", "batches", "modes", "dtypes", "backends")
_DEVICE_GRID_KEYS = ("inputs", "batches", "modes", "dtypes", "backends")
_OPTION_KEYS = ("max_time_s", "precision", "min_samples", "channels_last", "compiled", "threads", "interleave",
                "memory_limit", "max_batch")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Grid:
    """The cells of a study. ``inputs=None`` times each model at its own default input;
    ``per_device`` replaces grid values on one device (``{"cuda": {"batches": (1, 8, 32)}}``)."""

    devices: tuple[str, ...] = ("cpu",)  # may hold "auto", resolved when the study runs
    inputs: tuple[InputShape, ...] | None = None
    batches: tuple[int | str, ...] = (1, 8)  # "max": the largest batch that fits (archbench.sweep.maxbatch)
    modes: tuple[str, ...] = ("infer", "train")
    dtypes: tuple[str, ...] = ("fp32",)
    per_device: Mapping[str, Mapping[str, tuple]] = field(default_factory=dict, hash=False)
    backends: tuple[str, ...] | None = None  # None: compile when options.compiled, else eager (archbench.timing.backends)

    def for_device(self, device: str) -> Grid:
        """This grid with ``device``'s own values (``[grid.<device>]``) applied."""
        own = self.per_device.get(device) or self.per_device.get(device.split(":", 1)[0], {})  # cuda:1 -> [grid.cuda]
        return replace(self, devices=(device,), per_device={}, **dict(own))


@dataclass(frozen=True)
class StudyOptions:
    """How each cell is measured (see :func:`archbench.sweep.run.run_sweep`)."""

    max_time_s: float | None = DEFAULT_MAX_TIME_S
    precision: float = DEFAULT_PRECISION
    min_samples: int = DEFAULT_MIN_SAMPLES
    channels_last: bool = False
    compiled: bool = False
    threads: int | None = None
    interleave: bool = True  # models sharing a grid point timed in alternating rounds (archbench.sweep.interleave)
    memory_limit: int | None = None  # batch "max": bytes the search's worker may use (archbench.sweep.maxbatch)
    max_batch: int | None = None  # batch "max": never searched above

    @property
    def measure(self) -> MeasureOptions:
        return MeasureOptions(self.precision, self.max_time_s, self.min_samples)


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
            "options": {k: getattr(self.options, k) for k in _OPTION_KEYS},
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
        options=StudyOptions(**{k: v for k, v in data.get("options", {}).items() if k in _OPTION_KEYS}),
        title=data.get("title", ""),
        reference=data.get("reference", ""),
        path=Path(data["path"]) if data.get("path") else None,
        entries=entries,
        executor=data.get("executor") or {},
        targets=data.get("targets") or {},
    )


# ------------------------------------------------------------------------------------------ locating


def studies_dir() -> Path:
    """Built-in study files: ``specs/studies/`` (``archbench/_specs/studies`` in a wheel)."""
    from archbench.catalog.spec import builtin_specs_dir

    return builtin_specs_dir() / "studies"


def default_study_path() -> Path:
    return studies_dir() / f"{DEFAULT_STUDY}.toml"


def find_study(name_or_path: str | Path) -> Path:
    """A study file path, or the name of a built-in study (``default`` -> ``specs/studies/default.toml``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    builtin = studies_dir() / f"{name_or_path}.toml"
    if builtin.is_file() and "/" not in str(name_or_path):
        return builtin
    known = sorted(p.stem for p in studies_dir().glob("*.toml")) if studies_dir().is_dir() else []
    hint = f" Built-in studies: {', '.join(known)}." if known else ""
    raise UsageError(f"--study '{name_or_path}': no such study file.{hint}")


# ------------------------------------------------------------------------------------------- loading


def load_study(path: str | Path) -> Study:
    """Load and validate a study file; every error names the file and the key (exit code 2)."""
    path = Path(path)
    return study_from_mapping(read_toml_file(path, "study file", StudyError), path)


def study_from_mapping(data: Mapping[str, Any], path: Path | None = None, name: str | None = None) -> Study:
    where = str(path) if path else "study"
    _reject_unknown(where, "", data, _TOP_KEYS)
    if "models" not in data:
        raise StudyError(f"{where}: missing key 'models': list the models to compare, e.g. models = [\"wrn-40-1\", \"resnet18\"].")
    entries = _models(where, data["models"], path.parent if path else None)
    models = [e.name for e in entries]
    if len(set(models)) != len(models):
        raise StudyError(f"{where}: models: {models} names a model twice (give one a name: "
                         "{ model = \"...\", name = \"...\" }).")
    title = _string(where, "title", data.get("title", ""))
    reference = _string(where, "reference", data.get("reference", "")) or models[0]
    if reference not in models:
        raise StudyError(f"{where}: reference: '{reference}' is not one of the study's models ({', '.join(models)}).")
    grid = _grid(where, data.get("grid", {}))
    options = _options(where, data.get("options", {}))
    study_name = name or (path.stem if path else "study")
    if not _NAME_RE.match(study_name):
        raise StudyError(f"{where}: the study name '{study_name}' (the file's stem) may hold only letters, digits, '.', '_' and '-'.")
    executor, targets = _executor_tables(where, data.get("executor", {}), data.get("targets", {}))
    return Study(study_name, tuple(models), grid, options, title, reference, path, entries, executor, targets)


def _executor_tables(where: str, executor: Any, targets: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The ``[executor]`` table and the ``[targets.NAME]`` tables, checked key by key (see
    :mod:`archbench.execute.executors`)."""
    from archbench.study import EXECUTOR_KEYS, TARGET_KEYS, table_problem

    if not isinstance(executor, dict):
        raise StudyError(f"{where}: executor: expected a table [executor] with {', '.join(EXECUTOR_KEYS)}.")
    if not isinstance(targets, dict) or not all(isinstance(t, dict) for t in targets.values()):
        raise StudyError(f"{where}: targets: expected tables [targets.NAME] of Slurm job options "
                         f"({', '.join(TARGET_KEYS)}), e.g. [targets.a100] constraint = \"a100\".")
    problem = table_problem(executor, EXECUTOR_KEYS)
    if problem:
        raise StudyError(f"{where}: [executor]: {problem}")
    for name, table in targets.items():
        if not _NAME_RE.match(name) or "@" in name:
            raise StudyError(f"{where}: [targets.{name}]: a target name may hold only letters, digits, '.', '_' and '-'.")
        problem = table_problem(table, TARGET_KEYS)
        if problem:
            raise StudyError(f"{where}: [targets.{name}]: {problem}")
    if targets and executor.get("kind", "slurm") != "slurm":
        raise StudyError(f"{where}: [targets.*] run as Slurm jobs, and [executor] kind is {executor['kind']!r}: set "
                         "kind = \"slurm\" or remove the targets.")
    return dict(executor), {name: dict(table) for name, table in targets.items()}


_MODEL_KEYS = ("model", "name", "args", "inputs")


def _models(where: str, value: Any, base_dir: Path | None) -> tuple[StudyModel, ...]:
    """The ``models`` list: references, or tables ``{ model, name, args, inputs }``; references are checked
    against the grammar (nothing is imported), file paths made relative to the study file."""
    items = [value] if isinstance(value, (str, dict)) else value
    if not isinstance(items, list) or not items:
        raise StudyError(f"{where}: models: expected a non-empty list of model references, got {value!r}.")
    return tuple(_model(where, f"models[{i}]", item, base_dir) for i, item in enumerate(items))


def _model(where: str, key: str, item: Any, base_dir: Path | None) -> StudyModel:
    table = {"model": item} if isinstance(item, str) else item
    if not isinstance(table, dict):
        raise StudyError(f"{where}: {key}: expected a model reference or a table {{ model = ..., args = {{...}} }}, "
                         f"got {item!r}.")
    _reject_unknown(where, f"{key}.", table, _MODEL_KEYS)
    if "model" not in table:
        raise StudyError(f"{where}: {key}: missing key 'model' (the model reference, e.g. \"./nets/mynet.py:MyNet\").")
    text = _string(where, f"{key}.model", table["model"]).strip()
    name = _string(where, f"{key}.name", table.get("name", text)).strip()
    args = table.get("args", {})
    if not isinstance(args, dict):
        raise StudyError(f"{where}: {key}.args: expected a table of keyword arguments, e.g. args = {{ width = 64 }}.")
    inputs = table.get("inputs")
    try:
        model = builder_reference(text, base_dir) if parse_reference(text).kind in ("file", "hf") else text
        inputs = code_reference(_string(where, f"{key}.inputs", inputs), base_dir) if inputs is not None else None
    except ModelReferenceError as exc:
        raise StudyError(f"{where}: {key}: {exc}") from None
    if not name:
        raise StudyError(f"{where}: {key}.name: empty: give the name the report uses, or leave it out.")
    return StudyModel(name, model, args, inputs)


def _reject_unknown(where: str, prefix: str, table: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise StudyError(
                f"{where}: unknown key '{prefix}{key}'.{hint} "
                f"Allowed{' in [' + prefix.rstrip('.') + ']' if prefix else ''}: {', '.join(allowed)}."
            )


def _string(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise StudyError(f"{where}: {key}: expected a string, got {value!r}.")
    return value


def _str_list(where: str, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise StudyError(f"{where}: {key}: expected a non-empty list of names, got {value!r}.")
    return [v.strip() for v in value]


def _choices(where: str, key: str, value: Any, choices: tuple[str, ...]) -> tuple[str, ...]:
    items = _str_list(where, key, value)
    for item in items:
        if item not in choices:
            raise StudyError(f"{where}: {key}: '{item}' is not one of {', '.join(choices)}.")
    return tuple(dict.fromkeys(items))


def _batches(where: str, key: str, value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise StudyError(f"{where}: {key}: expected a non-empty list of positive integers, e.g. [1, 8].")
    for item in items:
        if item == "max":
            continue
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise StudyError(f"{where}: {key}: {item!r} is not a positive integer (nor \"max\"); expected e.g. "
                             f"{key.split('.')[-1]} = [1, 8, \"max\"].")
    return tuple(dict.fromkeys(items))


def _inputs(where: str, key: str, value: Any) -> tuple[InputShape, ...]:
    items = _str_list(where, key, value)
    shapes = []
    for item in items:
        try:
            shapes.append(parse_input(item, option=key))
        except UsageError as exc:
            raise StudyError(f"{where}: {exc}") from exc
    return tuple(dict.fromkeys(shapes))


def _devices(where: str, key: str, value: Any) -> tuple[str, ...]:
    from archbench.parsing import parse_device

    items = _str_list(where, key, value)
    try:
        return tuple(dict.fromkeys(item if item == "auto" else parse_device(item, key) for item in items))
    except UsageError as exc:
        raise StudyError(f"{where}: {exc}") from exc


def _grid_value(where: str, key: str, name: str, value: Any) -> tuple:
    if name == "modes":
        return _choices(where, key, value, MODE_CHOICES)
    if name == "dtypes":
        return _choices(where, key, value, DTYPE_CHOICES)
    if name == "backends":
        from archbench.timing.backends import check_backends

        try:
            return check_backends(_str_list(where, key, value), key)
        except UsageError as exc:
            raise StudyError(f"{where}: {exc}") from None
    parser = {"devices": _devices, "inputs": _inputs, "batches": _batches}[name]
    return parser(where, key, value)


def _grid(where: str, table: Any) -> Grid:
    if not isinstance(table, dict):
        raise StudyError(f"{where}: grid: expected a table [grid] with {', '.join(_GRID_KEYS)}.")
    device_tables = {k: v for k, v in table.items() if k in DEVICE_CHOICES}
    for device, sub in device_tables.items():
        if not isinstance(sub, dict):
            raise StudyError(f"{where}: grid.{device}: expected a table [grid.{device}] of grid values for that device.")
    _reject_unknown(where, "grid.", {k: v for k, v in table.items() if k not in device_tables}, [*_GRID_KEYS, *DEVICE_CHOICES])
    values = {name: _grid_value(where, f"grid.{name}", name, table[name]) for name in _GRID_KEYS if name in table}
    per_device: dict[str, dict[str, tuple]] = {}
    for device, sub in device_tables.items():
        _reject_unknown(where, f"grid.{device}.", sub, _DEVICE_GRID_KEYS)
        per_device[device] = {name: _grid_value(where, f"grid.{device}.{name}", name, sub[name]) for name in sub}
    return Grid(**values, per_device=per_device)


def _options(where: str, table: Any) -> StudyOptions:
    if not isinstance(table, dict):
        raise StudyError(f"{where}: options: expected a table [options] with {', '.join(_OPTION_KEYS)}.")
    _reject_unknown(where, "options.", table, _OPTION_KEYS)
    values: dict[str, Any] = {}
    if "max_time_s" in table:
        values["max_time_s"] = _positive_number(where, "options.max_time_s", table["max_time_s"])
    if "precision" in table:
        value = table["precision"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise StudyError(f"{where}: options.precision: {value!r} is not a fraction between 0 and 1 (e.g. 0.03 for ±3%).")
        values["precision"] = float(value)
    if isinstance(table.get("threads"), list):
        raise StudyError(f"{where}: options.threads: {table['threads']!r}: give one thread count (e.g. threads = 2); "
                         "a study does not sweep thread counts.")
    for key in ("min_samples", "threads", "max_batch"):
        if key in table:
            values[key] = _positive_int(where, f"options.{key}", table[key])
    if "memory_limit" in table:
        values["memory_limit"] = _memory_size(where, "options.memory_limit", table["memory_limit"])
    if problem := threads_problem(values.get("threads", 0)):
        raise StudyError(f"{where}: options.threads: {problem}")
    for key in ("channels_last", "compiled", "interleave"):
        if key in table:
            if not isinstance(table[key], bool):
                raise StudyError(f"{where}: options.{key}: expected true or false, got {table[key]!r}.")
            values[key] = table[key]
    return StudyOptions(**values)


def _positive_int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise StudyError(f"{where}: {key}: {value!r} is not a positive integer.")
    return value


def _memory_size(where: str, key: str, value: Any) -> int:
    """A memory size: a string with a unit ("8GiB") or a number of bytes."""
    from archbench.parsing import parse_bytes

    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise StudyError(f"{where}: {key}: {value!r} is not a memory size; expected e.g. {key.split('.')[-1]} = \"8GiB\".")
    try:
        return parse_bytes(value, key)
    except UsageError as exc:
        raise StudyError(f"{where}: {exc}") from None


def _positive_number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise StudyError(f"{where}: {key}: {value!r} is not a positive number of seconds.")
    return float(value)


# ------------------------------------------------------------------------------------------ resolving


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
    devices: Iterable[str] = ("cpu",),
    inputs: Iterable[InputShape] | None = None,
    batches: Iterable[int] = (1, 8),
    modes: Iterable[str] = MODE_CHOICES,
    dtypes: Iterable[str] = ("fp32",),
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
        raise UsageError(f"--reference '{reference}' is not one of the models compared ({', '.join(models)}).")
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
            raise UsageError(f"two models are named '{name}' ({named[name]} and {ref}): give each its own name, "
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


# ----------------------------------------------------------------------------- the study schema

_GRID_VALUES = {
    "inputs": list_of(input_shape(), non_empty=True),
    "batches": list_of(integer(1), non_empty=True),
    "modes": list_of(choice(MODES), non_empty=True),
    "dtypes": list_of(choice(DTYPES), non_empty=True),
}

STUDY = record({
    "name": Field(text(non_empty=True)),
    "title": Field(text(), False, ""),
    "models": Field(list_of(text(non_empty=True), non_empty=True)),
    "reference": Field(text(), False, ""),
    "path": Field(optional(text()), False, None),
    "grid": Field(record({
        "devices": Field(list_of(text(non_empty=True), non_empty=True)),
        "inputs": Field(optional(_GRID_VALUES["inputs"]), False, None),
        **{name: Field(check) for name, check in _GRID_VALUES.items() if name != "inputs"},
        "per_device": Field(mapping_of(record({name: Field(check, False, OMIT) for name, check in _GRID_VALUES.items()},
                                              what="a device's grid values (an object of inputs, batches, modes, dtypes)")),
                            False, {}),
    }, what="a grid (an object of devices, inputs, batches, modes, dtypes)")),
    "options": Field(record({
        "max_time_s": Field(optional(number(nullable=False, minimum=0)), False, OMIT),
        "precision": Field(fraction(), False, OMIT),
        "min_samples": Field(integer(1), False, OMIT),
        "channels_last": Field(boolean(), False, OMIT),
        "compiled": Field(boolean(), False, OMIT),
        "threads": Field(optional(integer(1)), False, OMIT),
        "interleave": Field(boolean(), False, OMIT),
    }, what="the measurement options (an object of max_time_s, precision, min_samples, ...)"), False, {}),
    "model_sources": Field(mapping_of(record({
        "model": Field(text(non_empty=True)),
        "args": Field(optional(mapping_of(anything())), False, None),
        "inputs": Field(optional(text()), False, None),
    })), False, {}),
    "executor": Field(mapping_of(anything()), False, {}),
    "targets": Field(mapping_of(mapping_of(anything())), False, {}),
}, what="a study (an object of name, models, grid, options)")


EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class SlurmOptions:
    """What each Slurm job asks for. ``exclusive``: no other job shares the node (on by default: CPU timings
    are only meaningful alone); ``sbatch``: further ``KEY=VALUE`` options, as ``sbatch --KEY=VALUE``."""

    partition: str | None = None
    gpus_per_job: int | None = None
    constraint: str | None = None
    time_limit_min: int = 30  # minutes (submitit always asks for a time; the partition default is not used)
    account: str | None = None
    qos: str | None = None
    exclusive: bool = True
    sbatch: tuple[tuple[str, str], ...] = ()


SLURM_KEYS = tuple(f.name for f in dataclasses.fields(SlurmOptions))


EXECUTOR_KEYS = ("kind", "workers", "detach", *(k for k in SLURM_KEYS))


TARGET_KEYS = SLURM_KEYS


_TABLE_TYPES: dict[str, tuple[type, ...]] = {"partition": (str,), "constraint": (str,), "account": (str,), "qos": (str,),
                                              "gpus_per_job": (int,), "time_limit_min": (int,), "exclusive": (bool,),
                                              "detach": (bool,), "sbatch": (dict,), "kind": (str,), "workers": (int, str)}


def table_problem(table: Mapping[str, Any], allowed: Sequence[str]) -> str | None:
    """What is wrong with an ``[executor]`` or ``[targets.NAME]`` table (None: nothing), naming the key."""
    import difflib

    for key, value in table.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            return f"unknown key '{key}'.{hint} Allowed: {', '.join(allowed)}."
        types = _TABLE_TYPES[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            return f"{key}: {value!r} is not {_kind_of(types)}."
        if key in ("gpus_per_job", "time_limit_min") and value <= 0:
            return f"{key}: {value!r} is not a positive integer."
        if key == "kind" and value not in EXECUTORS:
            return f"kind: {value!r} is not one of {', '.join(EXECUTORS)}."
        if key == "workers" and not (value == "auto" or isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return f"workers: {value!r} is neither a positive integer nor \"auto\"."
        if key == "sbatch" and not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value.values()):
            return "sbatch: expected a table of sbatch options and their values, e.g. sbatch = { mem = \"32G\" }."
    return None


def _kind_of(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", dict: "a table"}
    return " or ".join(names[t] for t in types)
