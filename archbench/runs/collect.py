"""``archbench collect``: gather the cells a detached run's Slurm jobs finished into the store, and write the
run's report once every cell is in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.errors import PATH_ECHO_LIMIT, quoted
from archbench.execute.executors import ExecutorError, settings_from_table
from archbench.execute.slurm import MANIFEST, SlurmExecutor, read_manifest
from archbench.execute.workunits import read_work_unit


@dataclass(frozen=True)
class Collected:
    """What :func:`collect_run` did: the run, its report folder, the compare result (None: the run was
    already complete) and how many of its jobs are still queued or running."""

    run_id: int
    out_dir: Path
    result: Any = None
    running: int = 0


def collect_run(store, ref: str, *, listener: Any = None) -> Collected:
    """Gather into ``store`` (and the run's partial files) the cells the Slurm jobs of run ``ref`` finished, and
    write its report once every cell is in. Idempotent: cells already gathered are skipped, a complete run is
    left as it is. Raises :class:`~archbench.errors.StoreError` for an unknown run, :class:`ExecutorError` for a
    run that has no jobs to collect."""
    from archbench.locations import MARKDOWN_NAME
    from archbench.results.jsonfile import read_json
    from archbench.runs.compare import run_compare
    from archbench.runs.report_folder import PARTIAL_JSON, SHARDS_DIR

    run_id = store.resolve(ref)
    info = store.run_info(run_id)
    out_dir = Path(info.out_path) if info.out_path else None
    work_dir = out_dir / SHARDS_DIR if out_dir is not None else None
    if out_dir is None or not (out_dir / PARTIAL_JSON).exists():
        if out_dir is not None and (out_dir / MARKDOWN_NAME).exists() and info.n_cells >= info.planned_cells:
            return Collected(run_id, out_dir)
        raise ExecutorError(f"run {run_id} has nothing to collect: it is not a detached compare run waiting for Slurm jobs "
                            f"(its results: {info.out_path or 'no folder'}).")
    if not read_manifest(work_dir):
        raise ExecutorError(f"run {run_id} submitted no Slurm jobs ({work_dir / MANIFEST} is missing): it was measured "
                            "in its own process; resume it with the command that started it.")
    latest = store.latest_run_for(out_dir)
    if latest != run_id:
        raise ExecutorError(f"run {run_id}'s folder {quoted(out_dir, PATH_ECHO_LIMIT)} belongs to a later run ({latest}) now: "
                            "collect that one.")
    study = read_json(out_dir / PARTIAL_JSON).study
    settings = settings_from_table(study.executor, study.targets)
    executor = SlurmExecutor(settings.slurm, detach=True, targets=settings.targets, submit=False)
    result = run_compare(study, out_dir, command=info.command, resume=True, sources=_unit_sources(work_dir),
                         listener=listener, store=store, executor=executor)
    return Collected(run_id, out_dir, result, executor.running)


def _unit_sources(work_dir: Path) -> dict[str, Any]:
    """The models of the run, as its work units hold them (no spec folder or import path of the original
    command needed)."""
    from archbench.catalog.spec import model_from_json

    sources: dict[str, Any] = {}
    for path in sorted(work_dir.glob("u*.unit.json")):
        for model in read_work_unit(path).models:
            sources.setdefault(model["name"], model_from_json(model))
    return sources
