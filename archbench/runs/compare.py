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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.catalog.source import ModelSource
from archbench.catalog.spec import ModelSpec
from archbench.errors import ModelRunError, OutputWriteError, UsageError, quoted
from archbench.listeners import notify as _notify
from archbench.outputs import check_writable_dir, owned_dir
from archbench.report import write_report
from archbench.results.data import ModelInfo, ReportData
from archbench.results.sinks import WriteFailure, where_kept
from archbench.rows import ResultRow, read_rows_csv
from archbench.runs.report_folder import (
    PARTIAL_CSV,
    PARTIAL_JSON,
    PARTIAL_SAMPLES,
    REPORTS_DIR,
    SHARDS_DIR,
    SampleRecorder,
    check_report_owner,
    partial_files,
    prepare_dir,
    read_samples,
    report_dir,
    with_samples,
)
from archbench.study import Study, resolve_models
from archbench.units import utc_now

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
        raise UsageError(f"study {quoted(study.name)} has no cells to measure.")
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
                             listener=SampleRecorder(out_dir / PARTIAL_SAMPLES, listener if recording is None else recording),
                             caches=None if recording is None else recording.caches,
                             interleave=Interleaving(study.reference) if study.options.interleave else None,
                             work_dir=out_dir / SHARDS_DIR)
        rows = with_samples(sweep.rows, read_samples(out_dir / PARTIAL_SAMPLES))
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
        for path in partial_files(out_dir):
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
