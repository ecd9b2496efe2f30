"""``archbench compare``: run a study and write its report directory. Nothing here prints; progress
goes to an optional listener.

:func:`run_compare` resolves the models, counts each one (batch 1, at its default input and at every
input of the grid), runs the sweep into ``results.partial.csv`` (each cell on disk as soon as it is
measured; the raw samples go to ``results.partial.samples.jsonl``) and, once every cell is done, writes
the report (``results.csv``, ``results.json``, ``report.md``, ``report.tex``, plots) and removes the partial files.

The report directory belongs to one study:

* a directory holding another study's report, or the report of a study of the same name that measured
  other models, grid or cell options, is never written to (unless ``force``); neither is one holding
  report files archbench did not write;
* one run at a time: a second run into a folder that a run is writing is refused (an advisory lock);
* an interrupted run leaves its partial files, and the finished report of an earlier run (if any)
  untouched; ``resume=True`` finishes it (same study definition), ``force=True`` discards it;
* re-running a finished study replaces its report only when the new run finishes.

:func:`rerender` re-renders a report from a stored ``results.csv`` without measuring; :func:`render` also
from a report folder, a bench CSV or a run of the results store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.catalog.source import ModelSource
from archbench.catalog.spec import ModelSpec
from archbench.errors import ModelRunError, OutputWriteError, UsageError
from archbench.listeners import notify as _notify
from archbench.locations import CSV_NAME, JSON_NAME, LATEX_NAME, MARKDOWN_NAME
from archbench.outputs import check_writable_dir, owned_dir
from archbench.report import write_report
from archbench.results.data import ModelInfo, ReportData
from archbench.results.sinks import WriteFailure, keeps_rows, where_kept
from archbench.rows import ResultRow, read_rows_csv
from archbench.study import Study, resolve_models
from archbench.units import utc_now

REPORTS_DIR = Path("reports")
PARTIAL_CSV = "results.partial.csv"
PARTIAL_JSON = "results.partial.json"
PARTIAL_SAMPLES = "results.partial.samples.jsonl"
SHARDS_DIR = "shards"  # work units and shards of out-of-process executors (archbench.execute.executors)
COUNT_DEVICE = "cpu"  # counts do not depend on the device; activation memory is measured on the CPU


@dataclass(frozen=True)
class CompareResult:
    """What a run did. ``files`` is empty when the run was interrupted (the report is written only
    when every cell is done); the finished cells are then in ``partial_csv``, or nowhere when it was
    interrupted while the models were counted (``counted`` False: nothing was measured or kept)."""

    out_dir: Path
    data: ReportData
    files: tuple[Path, ...]
    interrupted: bool
    measured: int  # cells measured by this run
    previous: int  # cells found from an interrupted run (``resume``)
    partial_csv: Path
    counted: bool = True
    warnings: tuple[str, ...] = ()
    run_id: int | None = None  # the run's id in the results store (None: not recorded)

    @property
    def all_failed(self) -> bool:
        """Every cell of a finished run failed (no ``ok`` row)."""
        return not self.interrupted and bool(self.data.rows) and all(r.status != "ok" for r in self.data.rows)


def report_dir(study: Study, base: str | Path = REPORTS_DIR) -> Path:
    """Where a study's report goes by default: ``reports/<study name>/``."""
    return Path(base) / study.name


# -------------------------------------------------------------------------------------- planning


def study_devices(study: Study) -> list[str]:
    """The study's devices with ``auto`` resolved (raises when CUDA is named but absent)."""
    from archbench.timing.devices import parse_devices

    return parse_devices(",".join(study.grid.devices), option="grid.devices")


def plan_study(study: Study, specs: Sequence[ModelSpec], previous: Iterable[ResultRow] = (), on_probe=None) -> list:
    """The cells of the study, device by device (each device with its own grid values); a batch ``max`` is
    searched (:mod:`archbench.sweep.maxbatch`) unless a row of ``previous`` (a resumed run's) found it."""
    from archbench.sweep.maxbatch import MaxBatchSettings, plan_with_max

    options = study.options
    settings = MaxBatchSettings(options.memory_limit, options.max_batch)
    cells = []
    for device in study_devices(study):
        grid = study.grid.for_device(device)
        cells += plan_with_max(specs, [device], grid.batches, grid.inputs, grid.modes, grid.dtypes,
                               options.channels_last, options.compiled, options.threads, settings=settings,
                               backends=grid.backends,
                               previous=previous, on_probe=on_probe)
    if study.targets:  # every cell on every target, its device labelled with the target (cpu@a)
        from archbench.sweep.cells import with_target

        cells = [dataclasses.replace(c, device=with_target(c.device, t)) for t in study.targets for c in cells]
    return cells


# -------------------------------------------------------------------------------------- counting


def count_models(specs: Sequence[ModelSource], cells: Sequence, listener: Any = None):
    """Batch-1 counts of each model at its default input and at every input it is timed at.

    Returns ``(model infos, stats, errors)``; a model that does not run on an input is an error entry
    ``(model, input, message)``, not an exception (its cells fail the same way in the sweep)."""
    from archbench.costs.summary import model_stats
    from archbench.parsing import format_input

    infos, stats, errors = [], [], []
    for spec in specs:
        infos.append(ModelInfo(spec.name, spec.family, spec.description, spec.input_str))
        shapes = list(dict.fromkeys([spec.input, *(c.input for c in cells if c.source == spec)]))
        model = spec.build(COUNT_DEVICE)
        for shape in shapes:
            _notify(listener, "counting", spec.name, format_input(shape))
            try:
                factory = spec.inputs_factory()
                inputs = factory(1, shape, "fp32", COUNT_DEVICE) if factory is not None else None
                stats.append(model_stats(spec, shape, 1, COUNT_DEVICE, None, model=model, inputs=inputs))
            except ModelRunError as exc:  # out of memory included: the cells say the rest
                errors.append((spec.name, format_input(shape), str(exc)))
        del model
    return tuple(infos), tuple(stats), tuple(errors)


# ----------------------------------------------------------------------------------- directories


def _study_identity(study: Study) -> dict[str, Any]:
    """What must match for ``--resume`` to continue a run: everything but the title and file path."""
    data = study.to_dict()
    data.pop("title")
    data.pop("path")
    data.pop("executor", None)  # where the cells run, not which
    return data


_BUDGET_OPTIONS = ("max_time_s", "precision", "min_samples", "interleave")  # how cells are measured, not which


def _what_is_measured(study: dict[str, Any]) -> dict[str, Any]:
    """The parts of a study (as :meth:`Study.to_dict`) that decide its cells: a finished report is replaced
    without ``force`` only by a run of the same cells (a longer time budget is the same study)."""
    data = {k: v for k, v in study.items() if k not in ("name", "title", "path", "executor")}
    data["options"] = {k: v for k, v in (study.get("options") or {}).items() if k not in _BUDGET_OPTIONS}
    return data


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted({*old, *new}) for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix.rstrip('.')} {old!r} -> {new!r}"]


def _stored_study(path: Path) -> dict[str, Any] | None:
    try:
        study = json.loads(path.read_text(encoding="utf-8"))["study"]
        return study if isinstance(study, dict) and isinstance(study.get("name"), str) else None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def check_report_owner(out_dir: Path, study: Study, *, force: bool) -> None:
    """``out_dir`` may receive ``study``'s report: it holds no report of another study (by name, or by the
    cells measured), and no report files archbench did not write. ``force`` skips the check."""
    if force:
        return
    stored = _stored_study(out_dir / JSON_NAME)
    if stored is not None and stored["name"] != study.name:
        raise UsageError(f"'{out_dir}' holds the report of study '{stored['name']}', not '{study.name}'",
                         remedies=("out", "force"))
    if stored is not None:
        changed = _differences(_what_is_measured(stored), _what_is_measured(study.to_dict()))
        if changed:
            raise UsageError(
                f"'{out_dir}' holds a report of study '{study.name}' that measured other cells ({'; '.join(changed)})",
                remedies=("out", "force"))
    foreign = [n for n in (MARKDOWN_NAME, LATEX_NAME, CSV_NAME, JSON_NAME) if (out_dir / n).exists()]
    if stored is None and foreign and not _partial_files(out_dir):
        raise UsageError(f"'{out_dir}' already holds {', '.join(foreign)}, which is not an archbench report",
                         remedies=("out", "force"))


def _partial_files(out_dir: Path) -> list[Path]:
    return [out_dir / name for name in (PARTIAL_CSV, PARTIAL_JSON, PARTIAL_SAMPLES) if (out_dir / name).exists()]


def prepare_dir(out_dir: Path, study: Study, *, resume: bool, force: bool) -> ReportData | None:
    """Check that ``out_dir`` may hold this run, per the rules in the module docstring; returns the
    stored data of the interrupted run to resume, if any. Raises :class:`UsageError` otherwise."""
    check_report_owner(out_dir, study, force=force)
    partial = _partial_files(out_dir)
    if not partial or force:
        shutil.rmtree(out_dir / SHARDS_DIR, ignore_errors=True)  # an earlier run's workers' results, not this run's
    if not partial:
        if resume:
            raise UsageError(f"nothing to resume in '{out_dir}': no interrupted run of study '{study.name}' is there",
                             remedies=("no_resume",))
        return None
    if force:
        for path in partial:
            path.unlink()
        return None
    if not resume:
        raise UsageError(f"'{out_dir}' holds an interrupted run ({out_dir / PARTIAL_CSV})", remedies=("resume", "force"))
    from archbench.results.jsonfile import read_json

    if not (out_dir / PARTIAL_JSON).exists():
        raise UsageError(f"cannot resume in '{out_dir}': {PARTIAL_JSON} is missing", remedies=("force",))
    stored = read_json(out_dir / PARTIAL_JSON)
    if _study_identity(stored.study) != _study_identity(study):
        raise UsageError(
            f"the interrupted run in '{out_dir}' is of a different study definition (study '{stored.study.name}'; "
            "models, grid or options changed). Resume it with its own definition", remedies=("force",)
        )
    return stored


# ----------------------------------------------------------------------------------------- samples


class _SampleRecorder:
    """Forwards the sweep's callbacks to ``listener`` and appends each finished cell's raw samples to a
    JSON-lines file (flushed), so a resumed run still has every sample for ``results.json``."""

    def __init__(self, path: Path, listener: Any):
        self.path = path
        self.listener = listener
        self.failure: WriteFailure | None = None

    def sweep_started(self, total: int, already_done: int) -> None:
        _notify(self.listener, "sweep_started", total, already_done)

    def cell_started(self, cell, index: int, todo: int) -> None:
        _notify(self.listener, "cell_started", cell, index, todo)

    def cell_phase(self, cell, phase: str) -> None:
        _notify(self.listener, "cell_phase", cell, phase)

    def warning(self, message: str) -> None:
        _notify(self.listener, "warning", message)

    def cell_finished(self, cell, row: ResultRow, index: int, todo: int) -> None:
        if self.failure is None:
            try:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"key": list(row.key()), "samples_ms": list(row.samples_ms)}) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:  # the row itself goes on to the CSV and the store (archbench.results.sinks)
                self.failure = WriteFailure.from_os_error("the raw samples file", self.path, exc)
                _notify(self.listener, "warning", f"{self.failure}. The results store keeps the raw samples of this "
                                                  "cell and the next; a report written from the folder lacks them.")
        _notify(self.listener, "cell_finished", cell, row, index, todo)

    def keeps_rows(self) -> bool:
        return keeps_rows(self.listener)


def _read_samples(path: Path) -> dict[tuple, tuple[float, ...]]:
    samples: dict[tuple, tuple[float, ...]] = {}
    if not path.exists():
        return samples
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            samples[tuple(record["key"])] = tuple(float(v) for v in record["samples_ms"])
        except (ValueError, KeyError, TypeError, RecursionError):
            continue  # a line cut by a crash (or not archbench's): that cell's samples are lost, its row is not
    return samples


def _with_samples(rows: Iterable[ResultRow], samples: dict[tuple, tuple[float, ...]]) -> tuple[ResultRow, ...]:
    return tuple(r if r.samples_ms else dataclasses.replace(r, samples_ms=samples.get(r.key(), ())) for r in rows)


# ------------------------------------------------------------------------------------------- running


def run_compare(
    study: Study,
    out_dir: str | Path | None = None,
    *,
    command: str,
    resume: bool = False,
    force: bool = False,
    extra_dirs: Iterable[str] = (),
    listener: Any = None,
    sources: Mapping[str, ModelSource] | None = None,
    store: Any = None,
    executor: Any = None,
) -> CompareResult:
    """Run ``study`` and write its report to ``out_dir`` (default ``reports/<study name>/``).

    ``command`` is the command line that reproduces the run (it goes into the report). Bad models,
    devices or directories raise before anything is measured; Ctrl-C returns ``interrupted=True`` with
    every finished cell saved. ``sources`` gives the model of each name in ``study.models`` directly.
    The models of each grid point are timed in alternating rounds, with paired ratios against the
    reference (:mod:`archbench.sweep.interleave`), unless the study's ``interleave`` option is false.
    ``store`` (an open :class:`~archbench.results.store.Store`) records the run and its cells as they finish;
    a resumed run goes on under its stored id, with its stored peaks.
    ``executor`` (:mod:`archbench.execute.executors`; default: this process) measures the cells; its work units
    and shards go to ``out_dir/shards/`` until the report is written.
    """
    from archbench.env.environment import environment
    from archbench.execute.executors import LocalExecutor
    from archbench.execute.worker import planned_threads
    from archbench.results.jsonfile import data_to_json, write_json
    from archbench.sweep.interleave import Interleaving
    from archbench.sweep.recording import Recording
    from archbench.sweep.run import check_buildable

    executor = executor if executor is not None else LocalExecutor()
    study = planned_threads(study, executor)
    out_dir = Path(out_dir) if out_dir is not None else report_dir(study)
    check_writable_dir(out_dir)
    # ``sources``: models the caller already holds (the Python API: modules, factories); by name otherwise
    specs = [sources[n] for n in study.models] if sources else resolve_models(study, extra_dirs)
    if "max" in study.grid.batches or any("max" in g.get("batches", ()) for g in study.grid.per_device.values()):
        from archbench.sweep.maxbatch import check_searchable

        check_searchable("slurm" if type(executor).__name__ == "SlurmExecutor" else "local", study.targets)
    partial = out_dir / PARTIAL_CSV
    cells = plan_study(study, specs, read_rows_csv(partial) if resume and partial.exists() else (),
                       lambda cell, probe: _notify(listener, "batch_probed", cell, probe))
    if not cells:
        raise UsageError(f"study '{study.name}' has no cells to measure.")
    executor.check(cells)
    check_buildable(cells)  # before the counts build each model for real
    with owned_dir(out_dir):
        previous = prepare_dir(out_dir, study, resume=resume, force=force)
        env = environment(list(dict.fromkeys(c.device for c in cells)), cells[0].threads)
        if previous is not None:
            meta = dataclasses.replace(previous, study=study, command=command, environments=(*previous.environments, env),
                                       planned_cells=len(cells))
        else:
            try:
                infos, stats, errors = count_models(specs, cells, listener)
            except KeyboardInterrupt:  # nothing measured yet: nothing to keep (a folder this run made goes too)
                meta = ReportData(study, (), (), planned_cells=len(cells), command=command)
                return CompareResult(out_dir, meta, (), True, 0, 0, out_dir / PARTIAL_CSV, counted=False)
            meta = ReportData(study, (), infos, stats, errors, (env,), {}, command, "", len(cells))
        try:
            write_json(out_dir / PARTIAL_JSON, meta)
        except OSError as exc:  # nothing measured yet: the folder cannot hold the run
            raise UsageError(f"{WriteFailure.from_os_error('the run file', out_dir / PARTIAL_JSON, exc)}.") from exc

        recording = None if store is None else Recording(
            store, command, title=study.title, env=env, out_path=out_dir, planned_cells=len(cells),
            resume=previous is not None, report=data_to_json(meta), listener=listener)
        sweep = executor.run(cells, out_dir / PARTIAL_CSV, resume=True, options=study.options.measure,
                             listener=_SampleRecorder(out_dir / PARTIAL_SAMPLES, listener if recording is None else recording),
                             caches=None if recording is None else recording.caches,
                             interleave=Interleaving(study.reference) if study.options.interleave else None,
                             work_dir=out_dir / SHARDS_DIR)
        rows = _with_samples(sweep.rows, _read_samples(out_dir / PARTIAL_SAMPLES))
        if recording is not None:
            recording.finish(rows, interrupted=sweep.interrupted or sweep.stopped)
        run_id = None if recording is None else recording.recorded
        workers = [e for e in executor.environments if e not in meta.environments]  # where out-of-process cells ran
        data = dataclasses.replace(meta, rows=rows, peaks_tflops={**meta.peaks_tflops, **sweep.peaks_tflops}, date=utc_now(),
                                   environments=(*meta.environments, *workers))
        counts = (len(sweep.measured), len(sweep.previous), out_dir / PARTIAL_CSV)
        kept = where_kept(sweep.unwritten, sweep.write_failure, recording)
        try:
            if sweep.interrupted or sweep.remaining or sweep.write_failure is not None:
                write_json(out_dir / PARTIAL_JSON, dataclasses.replace(data, rows=(), date=""))
            if not kept.complete:
                raise OutputWriteError(kept.summary())
            if sweep.interrupted or sweep.remaining:
                return CompareResult(out_dir, data, (), True, *counts, warnings=sweep.warnings, run_id=run_id)
            files = write_report(data, out_dir)  # its results.csv holds every row, those the partial CSV lacks too
        except OSError as exc:
            where = f"the results store (run {run_id})" if run_id is not None else f"'{out_dir / PARTIAL_CSV}'"
            raise OutputWriteError(f"{WriteFailure.from_os_error('the report', getattr(exc, 'filename', None) or out_dir, exc)}"
                                   f". The measured cells are kept in {where}.") from exc
        for path in _partial_files(out_dir):
            path.unlink()
        warnings = (*sweep.warnings, *([kept.summary()] if kept.failures else []))
        return CompareResult(out_dir, data, tuple(files), False, *counts, warnings=warnings, run_id=run_id)


def rerender(results_csv: str | Path, out_dir: str | Path | None = None, *, force: bool = False,
             loaded: tuple[ReportData, tuple[str, ...]] | None = None) -> tuple[ReportData, list[Path], tuple[str, ...]]:
    """Re-render the report of a stored ``results.csv`` (with its ``results.json``) into ``out_dir``
    (default: the CSV's folder) without measuring: the same Markdown as the run that produced it.
    Into another folder, the CSV and JSON are written too so the report's links hold; that folder follows
    the rules of a compare run's folder (:func:`check_report_owner`, one run at a time).

    ``loaded``: the data and warnings of ``results_csv``, when the caller has read it already.
    Returns the data, the files written and warnings (an unfinished last line of the CSV, skipped)."""
    from archbench.report import all_formats
    from archbench.results.jsonfile import load_results

    results_csv = Path(results_csv)
    data, warnings = loaded if loaded is not None else load_results(results_csv)
    target = Path(out_dir) if out_dir is not None else results_csv.parent
    same_place = target.resolve() == results_csv.parent.resolve()
    formats = [f for f in all_formats() if not (same_place and f.name in ("csv", "json"))]
    return data, write_rendered(data, target, force=force, formats=formats), warnings


def write_rendered(data: ReportData, target: Path, *, force: bool, formats=None) -> list[Path]:
    """Write ``data``'s report into ``target`` under the rules of a compare run's folder
    (:func:`check_report_owner`, one run at a time); every format unless ``formats``."""
    check_writable_dir(target)
    with owned_dir(target):
        check_report_owner(target, data.study, force=force)
        return write_report(data, target, formats)


@dataclass(frozen=True)
class Rendered:
    """A report rendered without measuring: its data, the files written, the folder, and warnings."""

    data: ReportData
    files: tuple[Path, ...]
    out_dir: Path
    warnings: tuple[str, ...] = ()


def render(source: str | Path, out_dir: str | Path | None = None, *, force: bool = False,
           db_path: str | Path | None = None) -> Rendered:
    """Render a report without measuring, from ``source``: a report folder or a compare ``results.csv``
    (re-rendered as :func:`rerender` does), a bench CSV (into a folder named after it by default:
    ``reports/bench-X.csv`` -> ``reports/bench-X/``), or a run of the results store at ``db_path``
    (default ``$ARCHBENCH_DB`` or ``reports/archbench.db``) named ``12``, ``latest`` or ``latest~N`` (into
    ``reports/run-<id>/`` by default). A path that exists wins over a run of the same name."""
    from archbench.results.sources import load_source

    loaded = load_source(str(source), db_path)
    if loaded.run_id is not None:
        target = Path(out_dir) if out_dir is not None else REPORTS_DIR / f"run-{loaded.run_id}"
    elif loaded.bench:
        target = Path(out_dir) if out_dir is not None else loaded.path.with_suffix("")
    else:  # a compare report: re-rendered beside its own files unless told otherwise
        data, files, warnings = rerender(loaded.path, out_dir, force=force, loaded=(loaded.data, loaded.warnings))
        return Rendered(data, tuple(files), Path(out_dir) if out_dir is not None else loaded.path.parent, warnings)
    return Rendered(loaded.data, tuple(write_rendered(loaded.data, target, force=force)), target, loaded.warnings)
