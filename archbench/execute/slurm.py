"""Measuring on a Slurm cluster through submitit: one job per model (and target), requeued once when
preempted or timed out, ``--detach`` and ``archbench collect`` (see :mod:`archbench.execute.executors`)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from archbench.errors import quoted
from archbench.execute.executors import (
    MAX_REQUEUES,
    SLURM_STATE_EVERY_S,
    Collector,
    ExecutorError,
    ShardedExecutor,
    Unit,
    group_by_model,
    known_peaks,
    next_unit_index,
    reference_for,
)
from archbench.execute.worker import run_work_unit
from archbench.execute.workunits import ShardContents, WorkUnit, make_work_unit, write_work_unit
from archbench.files import atomic_write_text, read_json_file
from archbench.rows import CellKey
from archbench.schemas import Field, anything, list_of, record, text, validate
from archbench.study import SlurmOptions
from archbench.sweep.cells import split_target

# ------------------------------------------------------------------------------------------- Slurm


def require_submitit():
    """submitit, and ``sbatch`` on PATH — or :class:`ExecutorError` saying how to get them."""
    try:
        import submitit
    except ImportError:
        raise ExecutorError("running on Slurm needs submitit, which is not installed: pip install \"archbench[slurm]\".") from None
    if shutil.which("sbatch") is None:
        raise ExecutorError("running on Slurm needs `sbatch` on PATH, and there is none here: run on a machine of the "
                            "cluster (a login node), or load its Slurm module.")
    return submitit


MANIFEST = "manifest.json"
JOB_MANIFEST = record({  # the Slurm jobs a detached run submitted (``shards/manifest.json``)
    "jobs": Field(list_of(record({
        "job_id": Field(anything()),
        "unit": Field(text()),  # the unit file the job runs
        "keys": Field(list_of(list_of(anything()))),  # the cell keys it holds
    }, what="a job (an object with its job_id, unit and keys)"))),
}, what="a job manifest (an object with its \"jobs\")")


class SlurmExecutor(ShardedExecutor):
    """One Slurm job per model (and target), submitted with submitit; the jobs' shards are read as they grow.
    A job preempted or timed out is requeued once (it goes on from its shard: nothing finished is measured
    again); a job that ends otherwise without finishing turns its cells into error rows with Slurm's state
    (``TIMEOUT``, ``CANCELLED by 0``, ``OUT_OF_MEMORY`` ...). ``detach``: submit, record the jobs in
    ``work_dir/manifest.json`` and return; :func:`collect` (or a resumed run) follows them later."""

    def __init__(self, slurm: SlurmOptions = SlurmOptions(), *, detach: bool = False,
                 targets: Mapping[str, SlurmOptions] | None = None, submit: bool = True):
        self.submitit = require_submitit()
        self.slurm, self.detach_after_submit, self.targets = slurm, detach, dict(targets or {})
        self.submit = submit  # False: only follow the jobs already submitted (collect)
        self.jobs: tuple[str, ...] = ()

    @property
    def threads(self) -> int | None:
        return None

    def detached(self) -> bool:
        return self.detach_after_submit

    def check(self, cells: Sequence[Any]) -> None:
        """Every model travels; every target is known; and Slurm accepts each target's job options (``sbatch
        --test-only``: an unknown partition, constraint, account or QoS is refused now, in Slurm's words)."""
        super().check(cells)
        unknown = sorted({t for c in cells if (t := split_target(c.device)[1]) and t not in self.targets})
        if unknown:
            raise ExecutorError(f"cells of target {quoted(unknown[0])}, which is not one of the targets "
                                f"({', '.join(self.targets) or 'none'}).")
        if not self.submit:
            return
        for target in dict.fromkeys(split_target(c.device)[1] for c in cells):
            mine = [c for c in cells if split_target(c.device)[1] == target]
            _test_submission(self.targets[target] if target else self.slurm, max(c.threads for c in mine),
                             any(c.device.startswith("cuda") for c in mine), target)

    def resume_units(self, work_dir: Path, collector: Collector) -> list[Unit]:
        super().resume_units(work_dir, collector)
        units = []
        for entry in read_manifest(work_dir):
            unit = Unit(Path(entry["unit"]), tuple(tuple(k) for k in entry["keys"]), f"Slurm job {entry['job_id']}",
                         self.submitit.SlurmJob(folder=work_dir / "slurm" / "%j", job_id=str(entry["job_id"])))
            units.append(unit)
        self.jobs = tuple(str(e["job_id"]) for e in read_manifest(work_dir))
        return units

    def plan(self, cells, options, interleave, caches, work_dir: Path) -> list[tuple[WorkUnit, dict]]:
        if not self.submit:
            return []
        known = known_peaks(caches)
        planned = []
        for group in group_by_model(cells):
            target = split_target(group[0].device)[1]
            slurm = self.targets[target] if target else self.slurm
            unit = make_work_unit(group, options, interleave=reference_for(group, cells, interleave), known_peaks=known,
                                  label=f"{group[0].model}{'@' + target if target else ''}")
            planned.append((unit, {"slurm": slurm, "cpus": max(c.threads for c in group),
                                   "gpu": any(c.device.startswith("cuda") for c in group)}))
        return planned

    def launch(self, planned, work_dir: Path) -> list[Unit]:
        first = next_unit_index(work_dir)
        units = []
        for n, (unit, how) in enumerate(planned):
            path = write_work_unit(work_dir / f"u{first + n:03d}.unit.json", unit)
            job = self._submit(path, how, work_dir)
            append_manifest(work_dir, {"job_id": job.job_id, "unit": str(path), "keys": [list(k) for k in unit.keys]})
            units.append(Unit(path, tuple(unit.keys), f"Slurm job {job.job_id}", job))
        self.jobs = (*self.jobs, *(u.handle.job_id for u in units))
        return units

    def _submit(self, unit_path: Path, how: Mapping[str, Any], work_dir: Path):
        slurm: SlurmOptions = how["slurm"]
        executor = self.submitit.SlurmExecutor(folder=work_dir / "slurm" / "%j", max_num_timeout=MAX_REQUEUES)
        parameters: dict[str, Any] = {"time": slurm.time_limit_min, "cpus_per_task": how["cpus"], "nodes": 1,
                                      "ntasks_per_node": 1, "job_name": f"archbench-{unit_path.stem.split('.')[0]}",
                                      "signal_delay_s": min(90, max(10, slurm.time_limit_min * 60 // 10))}
        optional = {"partition": slurm.partition, "constraint": slurm.constraint, "account": slurm.account,
                    "qos": slurm.qos, "gpus_per_node": slurm.gpus_per_job if how["gpu"] else None}
        parameters.update({k: v for k, v in optional.items() if v is not None})
        if slurm.exclusive:
            parameters["exclusive"] = True
        if slurm.sbatch:
            parameters["additional_parameters"] = dict(slurm.sbatch)
        executor.update_parameters(**parameters)
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):  # submitit prints sbatch's complaint itself
                return executor.submit(RunCellsJob(str(unit_path)))
        except self.submitit.core.utils.FailedJobError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            said = lines[-1] if lines else "no reason given"
            raise ExecutorError(f"Slurm refused the job: {said}") from None

    def poll(self, unit: Unit, contents: ShardContents) -> None:
        job = unit.handle
        if contents.ended and not contents.interrupted and not collect_missing(unit, contents):
            unit.finished = True
            return
        now = time.monotonic()
        if now - unit.checked_at < SLURM_STATE_EVERY_S:
            return
        unit.checked_at = now
        if job.done(force_check=True):
            state = job.state
            unit.ended = f"Slurm job {job.job_id} ended ({state})" if state not in ("COMPLETED",) else None
            unit.finished = unit.ended is None

    def stop(self, units: list[Unit], collector: Collector) -> None:
        """Ctrl-C in a run that waits for its jobs: the jobs are cancelled (a detached run is not stopped)."""
        for unit in units:
            if not unit.finished and unit.ended is None:
                with contextlib.suppress(Exception):
                    unit.handle.cancel(check=False)
        with contextlib.suppress(KeyboardInterrupt):
            for unit in units:
                collector.read(unit.shard)


def _sbatch_arguments(slurm: SlurmOptions, cpus: int, gpu: bool) -> list[str]:
    """The job options as sbatch arguments (as submitit writes them into the job script)."""
    given = {"partition": slurm.partition, "constraint": slurm.constraint, "account": slurm.account, "qos": slurm.qos,
             "gpus-per-node": slurm.gpus_per_job if gpu else None, "time": slurm.time_limit_min, "cpus-per-task": cpus}
    arguments = [f"--{k}={v}" for k, v in given.items() if v is not None]
    arguments += ["--exclusive"] if slurm.exclusive else []
    return arguments + [f"--{k}={v}" for k, v in slurm.sbatch]


def _test_submission(slurm: SlurmOptions, cpus: int, gpu: bool, target: str) -> None:
    """``sbatch --test-only``: Slurm's own verdict on the job options, without submitting anything."""
    command = ["sbatch", "--test-only", *_sbatch_arguments(slurm, cpus, gpu), "--wrap", "true"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExecutorError(f"cannot ask Slurm whether it accepts the jobs ({' '.join(command)}): {exc}.") from None
    if proc.returncode != 0:
        said = "; ".join(line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip())
        where = f" of target {quoted(target)}" if target else ""
        raise ExecutorError(f"Slurm refuses the jobs{where}: {said or f'sbatch exited with code {proc.returncode}'}")


def collect_missing(unit: Unit, contents: ShardContents) -> list[CellKey]:
    return [k for k in unit.keys if k not in contents.keys]


def read_manifest(work_dir: Path) -> list[dict[str, Any]]:
    path = work_dir / MANIFEST
    if not path.exists():
        return []
    return validate(JOB_MANIFEST, read_json_file(path, "a job manifest", ExecutorError), str(path), ExecutorError)["jobs"]


def append_manifest(work_dir: Path, entry: dict[str, Any]) -> None:
    jobs = [*read_manifest(work_dir), entry]
    atomic_write_text(work_dir / MANIFEST, json.dumps({"jobs": jobs}, indent=1) + "\n")


class RunCellsJob:
    """What a Slurm job runs: :func:`run_work_unit` on its unit file, in the job's process. On preemption or
    at its time limit submitit asks :meth:`checkpoint` for the job to requeue: the same unit (its shard keeps
    what finished), once."""

    def __init__(self, unit_path: str, requeued: int = 0):
        self.unit_path = unit_path
        self.requeued = requeued

    def __call__(self) -> int:
        contents = run_work_unit(self.unit_path)
        return len(contents.rows)

    def checkpoint(self, *args: Any, **kwargs: Any):
        if self.requeued >= MAX_REQUEUES:
            return None
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(RunCellsJob(self.unit_path, self.requeued + 1))


# ------------------------------------------------------------------------------------------- collect


