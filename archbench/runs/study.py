"""Study files: what ``archbench compare`` measures, as frozen data loaded from TOML (no torch import).

A study names the models, the grid of cells and the measurement options::

    title = "WRN-40-10 against ResNeXt-50"
    models = ["wrn-40-10", "resnext-50"]
    reference = "wrn-40-10"             # optional: relative speeds are against it (default: first model)

    [grid]
    devices = "auto"                    # "cpu", ["cpu", "cuda"], or "auto" (CPU, plus CUDA when present)
    inputs = ["3x32x32", "3x64x64"]     # optional: default is each model's own input
    batches = [1, 8]
    modes = ["infer", "train"]
    dtypes = ["fp32"]

    [grid.cuda]                         # optional per-device changes to the grid (batches, inputs, modes, dtypes)
    batches = [1, 8, 32, 128]

    [options]                           # all optional
    max_time_s = 8.0                    # per-cell time budget, warm-up included
    precision = 0.03                    # stop once the 95% CI of the median is within 3% of it
    min_samples = 5
    channels_last = false
    compiled = false
    threads = 2                         # torch intra-op threads (default: torch's current count)

The study's name is the file's stem (``specs/studies/default.toml`` -> ``default``); its report goes to
``reports/<name>/``. Every validation error names the file and the key.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from archbench.errors import StudyError, UnknownModelError, UsageError
from archbench.options import DEFAULT_MAX_TIME_S, DEFAULT_MIN_SAMPLES, DEFAULT_PRECISION, MeasureOptions
from archbench.parsing import InputShape, format_input, parse_input

DEVICE_CHOICES = ("cpu", "cuda")
MODE_CHOICES = ("infer", "train")  # as archbench.runs.sweep.MODES (not imported: the sweep module is heavier)
DTYPE_CHOICES = ("fp32", "bf16", "fp16")
DEFAULT_STUDY = "default"

_TOP_KEYS = ("title", "models", "reference", "grid", "options")
_GRID_KEYS = ("devices", "inputs", "batches", "modes", "dtypes")
_DEVICE_GRID_KEYS = ("inputs", "batches", "modes", "dtypes")
_OPTION_KEYS = ("max_time_s", "precision", "min_samples", "channels_last", "compiled", "threads")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Grid:
    """The cells of a study. ``inputs=None`` times each model at its own default input;
    ``per_device`` replaces grid values on one device (``{"cuda": {"batches": (1, 8, 32)}}``)."""

    devices: tuple[str, ...] = ("cpu",)  # may hold "auto", resolved when the study runs
    inputs: tuple[InputShape, ...] | None = None
    batches: tuple[int, ...] = (1, 8)
    modes: tuple[str, ...] = ("infer", "train")
    dtypes: tuple[str, ...] = ("fp32",)
    per_device: Mapping[str, Mapping[str, tuple]] = field(default_factory=dict, hash=False)

    def for_device(self, device: str) -> "Grid":
        """This grid with ``device``'s own values (``[grid.<device>]``) applied."""
        own = self.per_device.get(device) or self.per_device.get(device.split(":", 1)[0], {})  # cuda:1 -> [grid.cuda]
        return replace(self, devices=(device,), per_device={}, **dict(own))


@dataclass(frozen=True)
class StudyOptions:
    """How each cell is measured (see :func:`archbench.runs.sweep.run_sweep`)."""

    max_time_s: float | None = DEFAULT_MAX_TIME_S
    precision: float = DEFAULT_PRECISION
    min_samples: int = DEFAULT_MIN_SAMPLES
    channels_last: bool = False
    compiled: bool = False
    threads: int | None = None

    @property
    def measure(self) -> MeasureOptions:
        return MeasureOptions(self.precision, self.max_time_s, self.min_samples)


@dataclass(frozen=True)
class Study:
    """A named comparison: models, grid, options, reference model (``models[0]`` unless set)."""

    name: str
    models: tuple[str, ...]
    grid: Grid = Grid()
    options: StudyOptions = StudyOptions()
    title: str = ""
    reference: str = ""
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.reference and self.models:
            object.__setattr__(self, "reference", self.models[0])
        if not self.title:
            object.__setattr__(self, "title", " vs ".join(self.models))

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
                "per_device": {d: _jsonable_grid(v) for d, v in grid.per_device.items()},
            },
            "options": {k: getattr(self.options, k) for k in _OPTION_KEYS},
        }


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
    )
    return Study(
        name=data["name"],
        models=tuple(data["models"]),
        grid=grid,
        options=StudyOptions(**{k: v for k, v in data.get("options", {}).items() if k in _OPTION_KEYS}),
        title=data.get("title", ""),
        reference=data.get("reference", ""),
        path=Path(data["path"]) if data.get("path") else None,
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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: not valid TOML: {exc}. Fix the syntax at that line.") from exc
    except OSError as exc:
        raise StudyError(f"{path}: cannot read study file: {exc.strerror}.") from exc
    return study_from_mapping(data, path)


def study_from_mapping(data: Mapping[str, Any], path: Path | None = None, name: str | None = None) -> Study:
    where = str(path) if path else "study"
    _reject_unknown(where, "", data, _TOP_KEYS)
    if "models" not in data:
        raise StudyError(f"{where}: missing key 'models': list the models to compare, e.g. models = [\"wrn-40-1\", \"resnet18\"].")
    models = _str_list(where, "models", data["models"])
    if len(set(models)) != len(models):
        raise StudyError(f"{where}: models: {models} names a model twice.")
    title = _string(where, "title", data.get("title", ""))
    reference = _string(where, "reference", data.get("reference", "")) or models[0]
    if reference not in models:
        raise StudyError(f"{where}: reference: '{reference}' is not one of the study's models ({', '.join(models)}).")
    grid = _grid(where, data.get("grid", {}))
    options = _options(where, data.get("options", {}))
    study_name = name or (path.stem if path else "study")
    if not _NAME_RE.match(study_name):
        raise StudyError(f"{where}: the study name '{study_name}' (the file's stem) may hold only letters, digits, '.', '_' and '-'.")
    return Study(study_name, tuple(models), grid, options, title, reference, path)


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
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise StudyError(f"{where}: {key}: {item!r} is not a positive integer; expected e.g. {key.split('.')[-1]} = [1, 8].")
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
    from archbench.timing.devices import parse_device

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
    for key in ("min_samples", "threads"):
        if key in table:
            values[key] = _positive_int(where, f"options.{key}", table[key])
    for key in ("channels_last", "compiled"):
        if key in table:
            if not isinstance(table[key], bool):
                raise StudyError(f"{where}: options.{key}: expected true or false, got {table[key]!r}.")
            values[key] = table[key]
    return StudyOptions(**values)


def _positive_int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise StudyError(f"{where}: {key}: {value!r} is not a positive integer.")
    return value


def _positive_number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise StudyError(f"{where}: {key}: {value!r} is not a positive number of seconds.")
    return float(value)


# ------------------------------------------------------------------------------------------ resolving


def resolve_models(study: Study, extra_dirs: Iterable[str] = ()):
    """The :class:`~archbench.catalog.spec.ModelSpec` of each model; an unknown name in a study file is a
    :class:`StudyError` naming the file and the ``models`` key (imports torchvision for zoo names)."""
    from archbench.catalog.registry import get_spec

    specs = []
    for name in study.models:
        try:
            specs.append(get_spec(name, extra_dirs=extra_dirs))
        except UnknownModelError as exc:
            if study.path is None:
                raise
            raise StudyError(f"{study.path}: models: {exc}") from exc
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
) -> Study:
    """A study from command-line values; its name (the report folder) joins the model names with ``-vs-``."""
    models = tuple(dict.fromkeys(models))
    if reference and reference not in models:
        raise UsageError(f"--reference '{reference}' is not one of the models compared ({', '.join(models)}).")
    grid = Grid(tuple(devices), tuple(inputs) if inputs is not None else None, tuple(batches), tuple(modes), tuple(dtypes))
    study_name = name or "-vs-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", m) for m in models)
    return Study(study_name, models, grid, options, title, reference or "", None)
