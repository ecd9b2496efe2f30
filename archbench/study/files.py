"""Study files: what ``archbench compare`` measures, loaded from TOML into a :class:`~archbench.study.model.Study`
(no torch import); every validation error names the file and the key.

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
    max_samples = 10000
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

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from archbench.arguments import ArgumentError
from archbench.catalog.grammar import ModelReferenceError, builder_reference, code_reference, parse_reference
from archbench.errors import PATH_ECHO_LIMIT, StudyError, UsageError, quoted
from archbench.parsing import InputShape, parse_input, read_toml_file
from archbench.resources import threads_problem
from archbench.rows import DTYPES, MODES
from archbench.study.executors import EXECUTOR_KEYS, TARGET_KEYS, table_problem
from archbench.study.model import OPTION_KEYS, Grid, Study, StudyModel, StudyOptions

DEVICE_CHOICES = ("cpu", "cuda")  # the devices a [grid.<device>] table may name
DEFAULT_STUDY = "default"

_TOP_KEYS = ("title", "models", "reference", "grid", "options", "executor", "targets")
_GRID_KEYS = ("devices", "inputs", "batches", "modes", "dtypes", "backends")
_DEVICE_GRID_KEYS = ("inputs", "batches", "modes", "dtypes", "backends")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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
    raise UsageError(f"--study {quoted(name_or_path, PATH_ECHO_LIMIT)}: no such study file.{hint}")


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
        raise StudyError(f"{where}: reference: {quoted(reference)} is not one of the study's models ({', '.join(models)}).")
    grid = _grid(where, data.get("grid", {}))
    options = _options(where, data.get("options", {}))
    study_name = name or (path.stem if path else "study")
    if not NAME_RE.match(study_name):
        raise StudyError(f"{where}: the study name {quoted(study_name)} (the file's stem) may hold only letters, digits, '.', '_' and '-'.")
    executor, targets = _executor_tables(where, data.get("executor", {}), data.get("targets", {}))
    return Study(study_name, tuple(models), grid, options, title, reference, path, entries, executor, targets)


def _executor_tables(where: str, executor: Any, targets: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The ``[executor]`` table and the ``[targets.NAME]`` tables, checked key by key (see
    :mod:`archbench.execute.executors`)."""
    if not isinstance(executor, dict):
        raise StudyError(f"{where}: executor: expected a table [executor] with {', '.join(EXECUTOR_KEYS)}.")
    if not isinstance(targets, dict) or not all(isinstance(t, dict) for t in targets.values()):
        raise StudyError(f"{where}: targets: expected tables [targets.NAME] of Slurm job options "
                         f"({', '.join(TARGET_KEYS)}), e.g. [targets.a100] constraint = \"a100\".")
    problem = table_problem(executor, EXECUTOR_KEYS)
    if problem:
        raise StudyError(f"{where}: [executor]: {problem}")
    for name, table in targets.items():
        if not NAME_RE.match(name) or "@" in name:
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
                f"{where}: unknown key {quoted(prefix + key)}.{hint} "
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
            raise StudyError(f"{where}: {key}: {quoted(item)} is not one of {', '.join(choices)}.")
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
        return _choices(where, key, value, MODES)
    if name == "dtypes":
        return _choices(where, key, value, DTYPES)
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
        raise StudyError(f"{where}: options: expected a table [options] with {', '.join(OPTION_KEYS)}.")
    _reject_unknown(where, "options.", table, OPTION_KEYS)
    values: dict[str, Any] = {}
    if "max_time_s" in table:  # a finite number of seconds (TOML has inf)
        values["max_time_s"] = _positive_number(where, "options.max_time_s", table["max_time_s"])
    if isinstance(table.get("threads"), list):
        raise StudyError(f"{where}: options.threads: {table['threads']!r}: give one thread count (e.g. threads = 2); "
                         "a study does not sweep thread counts.")
    for key in ("threads", "max_batch"):
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
    try:  # precision, min_samples, max_samples: checked once, by MeasureOptions
        return StudyOptions.from_dict({**table, **values})
    except ArgumentError as exc:
        raise StudyError(f"{where}: options.{str(exc).removeprefix('argument ')}") from None


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

