"""``results.json``: everything a report shows — the rows with their raw samples, the per-model counts,
the environment fingerprint(s), the study, the command and the date — so ``archbench report`` can
re-render the report without measuring. :func:`load_results` reads it back beside a results CSV."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.errors import UsageError
from archbench.report.files import atomic_write_text
from archbench.results import ModelStats, ResultRow, read_results_csv
from archbench.runs.study import study_from_dict

if TYPE_CHECKING:
    from archbench.report import ReportData

FORMAT = "archbench-report"
FORMAT_VERSION = 1
_ROW_FIELDS = {f.name for f in dataclasses.fields(ResultRow)}
_STATS_FIELDS = {f.name for f in dataclasses.fields(ModelStats)}


def _clean(value: Any) -> Any:
    """NaN/inf -> null (JSON has no NaN), tuples -> lists, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def row_to_json(row: ResultRow) -> dict[str, Any]:
    return _clean(dataclasses.asdict(row))


def row_from_json(data: Mapping[str, Any]) -> ResultRow:
    values = {k: v for k, v in data.items() if k in _ROW_FIELDS}
    for name, value in list(values.items()):
        if value is None:
            values[name] = math.nan
    values["samples_ms"] = tuple(data.get("samples_ms") or ())
    return ResultRow(**values)


def data_to_json(data: ReportData) -> dict[str, Any]:
    return _clean({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "study": data.study.to_dict(),
        "command": data.command,
        "date": data.date,
        "planned_cells": data.planned_cells,
        "environments": list(data.environments),
        "peaks_tflops": dict(data.peaks_tflops),
        "models": [dataclasses.asdict(m) for m in data.models],
        # the flags are derived (read back from uncounted_ops), written for readers of the file
        "model_stats": [{**dataclasses.asdict(s), "macs_flag": s.macs_flag, "flops_backward_flag": s.flops_backward_flag}
                        for s in data.stats],
        "model_stats_errors": [{"model": m, "input": i, "error": e} for m, i, e in data.stats_errors],
        "rows": [row_to_json(r) for r in data.rows],
    })


def data_from_json(payload: Mapping[str, Any], where: str = "results.json") -> ReportData:
    from archbench.report import ModelInfo, ReportData

    if payload.get("format") != FORMAT:
        raise UsageError(f"{where} is not an archbench report file (no \"format\": \"{FORMAT}\").")
    return ReportData(
        study=study_from_dict(payload["study"]),
        rows=tuple(row_from_json(r) for r in payload.get("rows", [])),
        models=tuple(ModelInfo(**m) for m in payload.get("models", [])),
        stats=tuple(ModelStats(**{k: v for k, v in s.items() if k in _STATS_FIELDS}) for s in payload.get("model_stats", [])),
        stats_errors=tuple((e["model"], e["input"], e["error"]) for e in payload.get("model_stats_errors", [])),
        environments=tuple(payload.get("environments", [])),
        peaks_tflops=dict(payload.get("peaks_tflops", {})),
        command=payload.get("command", ""),
        date=payload.get("date", ""),
        planned_cells=int(payload.get("planned_cells", 0)),
    )


def write_json(path: Path, data: ReportData) -> Path:
    return atomic_write_text(path, json.dumps(data_to_json(data), indent=2) + "\n")


def read_json(path: Path) -> ReportData:
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); it cannot be read back as a report.") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}.") from exc
    return data_from_json(payload, str(path))


class JsonFormat:
    name = "json"
    filename = "results.json"

    def write(self, data: ReportData, out_dir: Path) -> list[Path]:
        return [write_json(Path(out_dir) / self.filename, data)]


# ------------------------------------------------------------------------------------------ reading

_KEY_COLUMNS = ("model", "device", "mode", "batch", "input", "dtype", "status", "median_ms")


def sidecar_path(results_csv: Path) -> Path:
    """The JSON stored with a results CSV: same folder and stem (``results.csv`` -> ``results.json``)."""
    return results_csv.with_suffix(".json")


def load_results(results_csv: str | Path) -> tuple[ReportData, tuple[str, ...]]:
    """Rows from ``results_csv`` (the raw samples re-attached from the JSON) and everything else from
    the JSON beside it, with the CSV's warnings (an unfinished last line, skipped). Raises
    :class:`UsageError` naming the missing or malformed file."""
    results_csv = Path(results_csv)
    if not results_csv.is_file():
        problem = "is a folder, not a file" if results_csv.is_dir() else "does not exist"
        raise UsageError(f"'{results_csv}' {problem}: give the results.csv of an `archbench compare` report.")
    sidecar = sidecar_path(results_csv)
    if not sidecar.is_file():
        raise UsageError(
            f"'{results_csv}' has no {sidecar.name} beside it: `archbench report` needs the results.json that "
            "`archbench compare` writes next to results.csv (it holds the study, environment, date and counts)."
        )
    _check_header(results_csv)
    stored = read_json(sidecar)
    samples = {r.key(): r.samples_ms for r in stored.rows}
    contents = read_results_csv(results_csv)
    rows = tuple(dataclasses.replace(r, samples_ms=samples.get(r.key(), ())) for r in contents.rows)
    return dataclasses.replace(stored, rows=rows), contents.warnings


def _check_header(results_csv: Path) -> None:
    with results_csv.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    missing = [c for c in _KEY_COLUMNS if c not in header]
    if missing:
        raise UsageError(f"'{results_csv}' is not an archbench results CSV (no column(s) {', '.join(missing)}).")
