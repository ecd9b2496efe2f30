"""``archbench diff``: is run NEW slower than run BASE, cell by cell? (No torch import.)

Cells are matched by :meth:`ResultRow.key`. For each cell measured successfully in both runs:

* ``ratio`` — how many times longer NEW takes (``> 1``: slower). With raw samples on both sides: the
  Hodges–Lehmann estimate with Moses' CI (:func:`~archbench.results.significance.ratio_ci`) and the
  Mann–Whitney U p-value, Holm-adjusted across every tested cell. From rows without raw samples (a CSV
  of ``bench``): ``new median / base median`` and the interval from the CI ends ``[new_low / base_high,
  new_high / base_low]`` (it covers the true ratio at least as often as both median CIs hold; no test).
* ``verdict`` — asv's rule (:func:`~archbench.results.significance.verdict`): slower / faster only when
  significant and the whole CI lies beyond ``±min_effect``; unchanged when it lies within; else noisy.
  Cells whose measurements cannot support a verdict are set aside first
  (:func:`~archbench.results.comparability.screen_cell`, with a ``reason``): measured under load in either
  run -> ``not comparable``; flagged noisy, or a CI covering less than the nominal -> ``noisy``. They
  are left out of the Holm family (no decision rests on their test) and are never a regression.

Counts (FLOPs per step, parameters, MACs) are compared exactly. Cells that failed in either run, and
cells measured in only one, are listed. Environment differences (torch, devices, threads, CUDA, driver
...) are listed first and make the runs "not comparable" unless allowed: then no cell is a regression.
A regression is a cell called slower, or one that ran in BASE and fails in NEW. When every cell both
runs measured was set aside as not comparable (and none regressed), the outcome is "not comparable" too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from archbench.errors import UsageError
from archbench.results.comparability import CELL_VERDICTS, CellVerdict, Screen, screen_cell
from archbench.results.jsonfile import _clean
from archbench.results.significance import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_EFFECT,
    RatioEstimate,
    ci_coverage,
    holm,
    mann_whitney_u,
    ratio_ci,
    verdict,
)
from archbench.rows import REQUIRED_KEY_COLUMNS, CellKey, ResultRow
from archbench.timing.stats import CONFIDENCE, median

Outcome = Literal["regressed", "no regression", "not comparable"]
Method = Literal["mann-whitney", "row CIs"]

# What makes timings of two runs incomparable (``envinfo.environment`` keys), plus each device's name.
ENV_FIELDS: tuple[str, ...] = ("torch", "torchvision", "cuda", "cudnn", "gpu_driver", "cpu_model", "threads",
                               "tf32_matmul", "tf32_cudnn", "cudnn_benchmark")


@dataclass(frozen=True)
class RunData:
    """One side of a diff: a label for the user, the rows (raw samples where stored), the environment
    fingerprint, and per-(model, input) counts (``params``, ``macs_per_sample``) where known."""

    label: str
    rows: Sequence[ResultRow]
    env: Mapping[str, Any] = field(default_factory=dict)
    counts: Mapping[tuple[str, str], Mapping[str, float]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnvDifference:
    name: str
    base: str
    new: str


@dataclass(frozen=True)
class CellDiff:
    """One cell measured in both runs. ``ratio``/``low``/``high``: NEW time / BASE time and its CI
    (``coverage``); ``p``/``p_holm``: Mann–Whitney p-value, raw and Holm-adjusted (NaN: no test, or a
    cell set aside); ``reason``: why the cell was set aside (empty when the statistics decided)."""

    key: CellKey
    base_median_ms: float
    new_median_ms: float
    ratio: float
    low: float
    high: float
    coverage: float
    p: float
    p_holm: float
    verdict: CellVerdict
    method: Method
    n_base: int
    n_new: int
    reason: str = ""


@dataclass(frozen=True)
class FailedCell:
    """A cell that did not run (status other than ``ok``) in at least one of the runs."""

    key: CellKey
    base_status: str
    new_status: str
    error: str  # NEW's error, else BASE's

    @property
    def newly_failed(self) -> bool:
        return self.base_status == "ok" and self.new_status != "ok"


@dataclass(frozen=True)
class CountChange:
    """An exact count that differs: ``what`` names the cell or the model and input."""

    what: str
    name: str
    base: float
    new: float


@dataclass(frozen=True)
class DiffResult:
    """The comparison of two runs: the environment differences, the cells both ran (``cells``), the
    cells that failed in either (``failed``), those only one measured, exact count changes, and notes
    (warnings of the files read, cells compared without raw samples, a run without an environment)."""

    base_label: str
    new_label: str
    env_differences: tuple[EnvDifference, ...]
    allow_env_change: bool
    cells: tuple[CellDiff, ...]
    failed: tuple[FailedCell, ...]
    only_in_base: tuple[CellKey, ...]
    only_in_new: tuple[CellKey, ...]
    count_changes: tuple[CountChange, ...]
    notes: tuple[str, ...]
    min_effect: float
    alpha: float
    confidence: float

    @property
    def comparable(self) -> bool:
        return self.allow_env_change or not self.env_differences

    @property
    def slower(self) -> tuple[CellDiff, ...]:
        return tuple(c for c in self.cells if c.verdict == "slower")

    @property
    def newly_failed(self) -> tuple[FailedCell, ...]:
        return tuple(f for f in self.failed if f.newly_failed)

    @property
    def not_comparable(self) -> tuple[CellDiff, ...]:
        """Cells measured under load in either run: their times say nothing about the code."""
        return tuple(c for c in self.cells if c.verdict == "not comparable")

    @property
    def fully_compared(self) -> bool:
        """Nothing was left unjudged for the environment's sake: the environments match (or a difference
        was allowed) and no cell was measured under load."""
        return self.comparable and not self.not_comparable

    @property
    def outcome(self) -> Outcome:
        if not self.comparable:
            return "not comparable"
        if self.slower or self.newly_failed:
            return "regressed"
        return "not comparable" if self.cells and len(self.not_comparable) == len(self.cells) else "no regression"

    def verdict_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CELL_VERDICTS, 0)
        for cell in self.cells:
            counts[cell.verdict] += 1
        return counts


# ------------------------------------------------------------------------------------------ diff


def diff_runs(base: RunData, new: RunData, *, min_effect: float = DEFAULT_MIN_EFFECT, alpha: float = DEFAULT_ALPHA,
              confidence: float = CONFIDENCE, allow_env_change: bool = False) -> DiffResult:
    """Compare ``new`` against ``base`` cell by cell (see the module docstring). Raises
    :class:`UsageError` when the runs have no cell in common."""
    base_rows, new_rows = _by_key(base.rows), _by_key(new.rows)
    common = [key for key in base_rows if key in new_rows]
    if not common:
        raise UsageError(f"'{base.label}' and '{new.label}' have no cell in common (a cell is a model at one device, "
                         "mode, batch, input, dtype and options): compare runs of the same models and grid.")
    pairs = [(base_rows[k], new_rows[k]) for k in common if _both_ok(base_rows[k], new_rows[k])]
    tested = [(b, n) for b, n in pairs if _testable(b.samples_ms) and _testable(n.samples_ms)]
    pvalues = {b.key(): mann_whitney_u(n.samples_ms, b.samples_ms)[1] for b, n in tested}
    estimates = {b.key(): _estimate(b, n, b.key() in pvalues, confidence) for b, n in pairs}
    screens = {b.key(): screen_cell(b, n, raw_samples=b.key() in pvalues, ratio_coverage=estimates[b.key()].coverage,
                                    confidence=confidence) for b, n in pairs}
    family = [key for key in pvalues if screens[key].verdict is None]  # Holm over the cells a test decides
    adjusted = dict(zip(family, holm([pvalues[key] for key in family])))
    cells = tuple(_cell_diff(b, n, estimates[b.key()], pvalues.get(b.key()), adjusted.get(b.key()), screens[b.key()],
                             min_effect, alpha) for b, n in pairs)
    return DiffResult(
        base_label=base.label,
        new_label=new.label,
        env_differences=env_differences(base.env, new.env),
        allow_env_change=allow_env_change,
        cells=cells,
        failed=tuple(_failed(base_rows[k], new_rows[k]) for k in common if not _both_ok(base_rows[k], new_rows[k])),
        only_in_base=tuple(k for k in base_rows if k not in new_rows),
        only_in_new=tuple(k for k in new_rows if k not in base_rows),
        count_changes=(*_flops_changes(base_rows, new_rows, common), *_model_count_changes(base.counts, new.counts)),
        notes=_notes(base, new, len(tested), len(pairs)),
        min_effect=min_effect,
        alpha=alpha,
        confidence=confidence,
    )


def _by_key(rows: Iterable[ResultRow]) -> dict[CellKey, ResultRow]:
    return {row.key(): row for row in rows}


def _testable(samples: Sequence[float]) -> bool:
    """Raw samples the test and the ratio CI can use: some, every one a positive time."""
    return bool(samples) and all(math.isfinite(t) and t > 0 for t in samples)


def _both_ok(base: ResultRow, new: ResultRow) -> bool:
    return base.status == new.status == "ok"


def _estimate(base: ResultRow, new: ResultRow, raw_samples: bool, confidence: float) -> RatioEstimate:
    return ratio_ci(base.samples_ms, new.samples_ms, confidence) if raw_samples else _from_row_cis(base, new)


def _cell_diff(base: ResultRow, new: ResultRow, estimate: RatioEstimate, p: float | None, p_holm: float | None,
               screen: Screen, min_effect: float, alpha: float) -> CellDiff:
    if p is None:
        method, base_median, new_median = "row CIs", base.median_ms, new.median_ms
    else:
        method, base_median, new_median = "mann-whitney", median(base.samples_ms), median(new.samples_ms)
    return CellDiff(
        key=base.key(),
        base_median_ms=base_median,
        new_median_ms=new_median,
        ratio=estimate.ratio,
        low=estimate.low,
        high=estimate.high,
        coverage=estimate.coverage,
        p=math.nan if p is None else p,
        p_holm=math.nan if p_holm is None else p_holm,
        verdict=screen.verdict or verdict(estimate.low, estimate.high, p_holm, alpha=alpha, min_effect=min_effect),
        method=method,
        n_base=len(base.samples_ms) or base.n_samples,
        n_new=len(new.samples_ms) or new.n_samples,
        reason=screen.reason,
    )


def _from_row_cis(base: ResultRow, new: ResultRow) -> RatioEstimate:
    """The ratio of the medians and the interval from the CI ends; its coverage is at least the
    product of the two CIs' coverages (both true medians inside their CIs implies the ratio inside)."""
    return RatioEstimate(_ratio(new.median_ms, base.median_ms), _ratio(new.ci_low_ms, base.ci_high_ms),
                         _ratio(new.ci_high_ms, base.ci_low_ms), ci_coverage(base) * ci_coverage(new))


def _ratio(numerator: float, denominator: float) -> float:
    """NaN where a stored figure is missing or not a positive time (the verdict is then "noisy")."""
    return numerator / denominator if denominator > 0 and math.isfinite(denominator) else math.nan


def _failed(base: ResultRow, new: ResultRow) -> FailedCell:
    return FailedCell(base.key(), base.status, new.status, new.error or base.error)


def _flops_changes(base_rows: Mapping[CellKey, ResultRow], new_rows: Mapping[CellKey, ResultRow],
                   common: list[CellKey]) -> list[CountChange]:
    changes = []
    for key in common:
        before, after = base_rows[key].flops_per_step, new_rows[key].flops_per_step
        if math.isfinite(before) and math.isfinite(after) and before != after:
            changes.append(CountChange(cell_label(key), "flops_per_step", before, after))
    return changes


def _model_count_changes(base: Mapping[tuple[str, str], Mapping[str, float]],
                         new: Mapping[tuple[str, str], Mapping[str, float]]) -> list[CountChange]:
    changes = []
    for (model, input), counts in base.items():
        for name, before in counts.items():
            after = new.get((model, input), {}).get(name)
            if after is not None and before is not None and before != after:
                changes.append(CountChange(f"{model} {input}", name, before, after))
    return changes


def _notes(base: RunData, new: RunData, tested: int, compared: int) -> tuple[str, ...]:
    notes = [*base.warnings, *new.warnings]
    if tested < compared:
        notes.append(f"{compared - tested} of {compared} cells have no usable raw samples in one of the runs (a bench "
                     "CSV keeps medians and CIs only): they are compared by their median CIs, without a test.")
    for run in (base, new):
        if not run.env:
            notes.append(f"{run.label} has no recorded environment: differences in torch, device or threads "
                         "cannot be detected.")
    return tuple(notes)


def cell_label(key: CellKey) -> str:
    """``resnet-18 infer cpu fp32 b8 3x224x224`` (+ ``channels-last``, ``compiled``, ``threads N``)."""
    extras = [flag for flag, on in (("channels-last", key.channels_last), (key.backend, key.backend != "eager")) if on]
    extras += [f"threads {key.threads}"] if key.threads else []
    return " ".join([key.model, key.mode, key.device, key.dtype, f"b{key.batch}", key.input, *extras])


# ------------------------------------------------------------------------------------ environment


def env_fingerprint(env: Mapping[str, Any]) -> dict[str, str]:
    """The recorded fields that change timings (:data:`ENV_FIELDS` and ``device <name>`` per device), as text."""
    flat = {name: _text(env[name]) for name in ENV_FIELDS if name in env}
    for device, name in (env.get("devices") or {}).items():
        flat[f"device {device}"] = _text(name)
    return flat


def env_differences(base: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[EnvDifference, ...]:
    """Fields recorded in both fingerprints with different values (a field only one run recorded, e.g.
    a device only one of them used, is not a difference)."""
    before, after = env_fingerprint(base), env_fingerprint(new)
    return tuple(EnvDifference(name, before[name], after[name]) for name in before
                 if name in after and before[name] != after[name])


def merge_sessions(envs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One fingerprint for a run measured in several sessions (``--resume``): a field the sessions
    disagree on holds their values joined by `` | ``, so it differs from any single session's."""
    if len(envs) == 1:
        return dict(envs[0])
    merged: dict[str, Any] = {}
    for name in dict.fromkeys(k for env in envs for k in env):
        values = list(dict.fromkeys(json.dumps(env.get(name), sort_keys=True, default=str) for env in envs))
        merged[name] = envs[0].get(name) if len(values) == 1 else " | ".join(values)
    return merged


def _text(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


# ----------------------------------------------------------------------------------------- loading


def load_run_data(ref: str, db_path: str | Path | None = None) -> RunData:
    """A run to diff from ``ref``: a report folder (``archbench compare``'s: its results.json holds the
    raw samples), a results CSV (``bench``'s, or ``compare``'s with its results.json), a results.json,
    or a run of the results store at ``db_path`` (``latest``, ``latest~N`` or a run id; default store:
    :func:`~archbench.results.store.default_db_path`)."""
    from archbench.results.store import is_run_ref

    path = Path(ref)
    if path.is_dir():
        return _from_report_dir(path)
    if path.is_file():
        return _from_report_json(path) if path.suffix == ".json" else _from_csv(path)
    if is_run_ref(ref):
        return _from_store(ref, db_path)
    raise UsageError(f"'{ref}' is neither a results CSV, a report folder nor a run of the results store "
                     "('latest', 'latest~N' or a run id): give an existing file or folder, or a run.")


def _from_report_dir(path: Path) -> RunData:
    from archbench.locations import JSON_NAME

    if not (path / JSON_NAME).is_file():
        raise UsageError(f"'{path}' is a folder without {JSON_NAME}: give the folder of an `archbench compare` "
                         "report, or a results CSV.")
    return _from_report_json(path / JSON_NAME, label=str(path))


def _from_report_json(path: Path, label: str | None = None) -> RunData:
    from archbench.results.jsonfile import read_json

    return _from_report_data(read_json(path), label or str(path))


def _from_report_data(data, label: str, warnings: tuple[str, ...] = ()) -> RunData:
    counts = {(s.model, s.input): {"params": s.params_total, "macs_per_sample": s.macs / s.batch} for s in data.stats}
    return RunData(label, data.rows, merge_sessions(data.environments) if data.environments else {}, counts, warnings)


_KEY_COLUMNS = (*REQUIRED_KEY_COLUMNS, "status", "median_ms")


def _from_csv(path: Path) -> RunData:
    from archbench.env.environment import environment_path
    from archbench.results.jsonfile import FORMAT, load_results, sidecar_path
    from archbench.rows import read_results_csv

    _check_results_csv(path)
    sidecar = sidecar_path(path)
    if sidecar.is_file() and _json_format(sidecar) == FORMAT:
        data, warnings = load_results(path)
        return _from_report_data(data, str(path), warnings)
    contents = read_results_csv(path)
    environment, env_warnings = _bench_environment(environment_path(path))
    return RunData(str(path), contents.rows, environment, {}, (*contents.warnings, *env_warnings))


def _check_results_csv(path: Path) -> None:
    from archbench.files import csv_header

    header = csv_header(path)
    missing = [c for c in _KEY_COLUMNS if c not in header]
    if missing:
        raise UsageError(f"'{path}' is not an archbench results CSV (no column(s) {', '.join(missing)}): give "
                         "the CSV of `archbench bench` or the results.csv of an `archbench compare` report.")


def _json_format(path: Path) -> str | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload.get("format") if isinstance(payload, dict) else None


def _bench_environment(path: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The fingerprint(s) ``bench`` keeps beside its CSV (one per session), merged; ``{}`` without one, and
    with a warning naming the file when it is there but unreadable (the rows are compared without it)."""
    from archbench.files import read_json_file
    from archbench.results.schemas import environment_sessions

    if not path.exists():
        return {}, ()
    try:
        sessions = environment_sessions(read_json_file(path, "an environment file"))
    except UsageError as exc:
        return {}, (f"{exc} The rows are compared without their environment.",)
    return (merge_sessions(sessions) if sessions else {}), ()


def _from_store(ref: str, db_path: str | Path | None) -> RunData:
    from archbench.results.store import Store, default_db_path, run_report_data

    with Store.open(default_db_path() if db_path is None else db_path, readonly=True) as store:
        run_id = store.resolve(ref)
        return _from_report_data(run_report_data(store, run_id), f"run {run_id}")


# ------------------------------------------------------------------------------------------- JSON


def diff_to_json(result: DiffResult) -> dict[str, Any]:
    """The diff as JSON-able data (NaN as ``null``; cells with their key fields spelled out)."""
    return _clean({
        "base": result.base_label,
        "new": result.new_label,
        "outcome": result.outcome,
        "comparable": result.comparable,
        "fully_compared": result.fully_compared,
        "min_effect": result.min_effect,
        "alpha": result.alpha,
        "confidence": result.confidence,
        "environment_differences": [vars(d) for d in result.env_differences],
        "verdicts": result.verdict_counts(),
        "cells": [{**c.key._asdict(), **{k: v for k, v in vars(c).items() if k != "key"}} for c in result.cells],
        "failed": [{**f.key._asdict(), "base_status": f.base_status, "new_status": f.new_status, "error": f.error,
                    "newly_failed": f.newly_failed} for f in result.failed],
        "only_in_base": [k._asdict() for k in result.only_in_base],
        "only_in_new": [k._asdict() for k in result.only_in_new],
        "count_changes": [vars(c) for c in result.count_changes],
        "notes": list(result.notes),
    })

