"""``results.json``: everything a report shows — the rows with their raw samples, the per-model counts,
the environment fingerprint(s), the study, the command and the date — so ``archbench report`` can
re-render the report without measuring. :func:`load_results` reads it back beside a results CSV."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archbench.errors import PATH_ECHO_LIMIT, UsageError, quoted
from archbench.files import atomic_write_text, jsonable, read_json_file
from archbench.results.schemas import REPORT
from archbench.rows import ModelStats, check_results_csv, read_results_csv, row_from_json, row_to_json
from archbench.schemas import validate
from archbench.study import study_from_dict

if TYPE_CHECKING:
    from archbench.results.data import ReportData

FORMAT = "archbench-report"
FORMAT_VERSION = 1


def data_to_json(data: ReportData) -> dict[str, Any]:
    return jsonable({
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
    from archbench.results.data import ModelInfo, ReportData

    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise UsageError(f"{where} is not an archbench report file (no \"format\": \"{FORMAT}\").")
    payload = validate(REPORT, payload, where)  # every field of the shape archbench wrote, or an error naming it
    return ReportData(
        study=study_from_dict(payload["study"]),
        rows=tuple(row_from_json(r) for r in payload["rows"]),
        models=tuple(ModelInfo(**m) for m in payload["models"]),
        stats=tuple(ModelStats(**s) for s in payload["model_stats"]),
        stats_errors=tuple((e["model"], e["input"], e["error"]) for e in payload["model_stats_errors"]),
        environments=tuple(payload["environments"]),
        peaks_tflops=dict(payload["peaks_tflops"]),
        command=payload["command"],
        date=payload["date"],
        planned_cells=payload["planned_cells"],
    )


def write_json(path: Path, data: ReportData) -> Path:
    return atomic_write_text(path, json.dumps(data_to_json(data), indent=2) + "\n")


def read_json(path: Path) -> ReportData:
    return data_from_json(read_json_file(path, "an archbench report"), str(path))


class JsonFormat:
    name = "json"
    filename = "results.json"

    def write(self, data: ReportData, out_dir: Path) -> list[Path]:
        return [write_json(Path(out_dir) / self.filename, data)]


# ------------------------------------------------------------------------------------------ reading

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
        raise UsageError(f"{quoted(results_csv, PATH_ECHO_LIMIT)} {problem}: give the results.csv of an `archbench compare` report.")
    sidecar = sidecar_path(results_csv)
    if not sidecar.is_file():
        raise UsageError(
            f"{quoted(results_csv, PATH_ECHO_LIMIT)} has no {sidecar.name} beside it: `archbench report` needs the results.json that "
            "`archbench compare` writes next to results.csv (it holds the study, environment, date and counts)."
        )
    check_results_csv(results_csv)
    stored = read_json(sidecar)
    samples = {r.key(): r.samples_ms for r in stored.rows}
    contents = read_results_csv(results_csv)
    rows = tuple(dataclasses.replace(r, samples_ms=samples.get(r.key(), ())) for r in contents.rows)
    return dataclasses.replace(stored, rows=rows), contents.warnings

