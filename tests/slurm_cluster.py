"""Whether a real Slurm answers on this machine, for the tests marked ``slurm``. ci/slurm/start.sh starts a
one-node Slurm (partitions ``debug``, the default, and ``cpu``); without one these tests skip, saying why."""

from __future__ import annotations

import functools
import shutil
import subprocess
import time

import pytest

START_HINT = "start one with `ci/slurm/start.sh` (as root)"
NODE_STATES_TAKING_JOBS = {"idle", "mixed", "allocated", "completing"}


def slurm_available(timeout_s: float = 5.0) -> tuple[bool, str]:
    """(True, "") when `sbatch` is on PATH and `sinfo` reports, within ``timeout_s``, a node that takes
    jobs; otherwise (False, why not)."""
    if shutil.which("sbatch") is None:
        return False, f"no Slurm here: `sbatch` is not on PATH; {START_HINT}"
    try:
        proc = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%T"],
            check=False, capture_output=True, text=True, timeout=timeout_s,
        )
    except FileNotFoundError:
        return False, f"`sbatch` is on PATH but `sinfo` is not; {START_HINT}"
    except subprocess.TimeoutExpired:
        return False, f"`sinfo` did not answer within {timeout_s:g} s (is slurmctld up?); {START_HINT}"
    if proc.returncode != 0:
        return False, f"`sinfo` failed: {proc.stderr.strip() or proc.returncode}; {START_HINT}"
    # sinfo marks a node that does not respond with a trailing `*` (and other states with other signs).
    states = [line.strip().rstrip("*~#!%$@^-+") for line in proc.stdout.splitlines() if line.strip()]
    if not NODE_STATES_TAKING_JOBS.intersection(states):
        said = ", ".join(states) or "no nodes"
        return False, f"no Slurm node takes jobs (sinfo says: {said}); {START_HINT}"
    return True, ""


@functools.cache
def _slurm_available_once() -> tuple[bool, str]:
    return slurm_available()


def require_slurm() -> None:
    """Skip the calling test, with the reason, unless a Slurm node takes jobs here (asked once per test
    session: an installed but stopped Slurm costs the sinfo timeout)."""
    available, reason = _slurm_available_once()
    if not available:
        pytest.skip(reason)


def result_within(job, timeout_s: float = 120.0):
    """``job.result()`` of a submitit job, failing the test (and cancelling the job) when it has not finished
    within ``timeout_s`` instead of waiting forever for a job that never starts."""
    deadline = time.monotonic() + timeout_s
    while not job.done():
        if time.monotonic() > deadline:
            queue = subprocess.run(
                ["squeue", "--jobs", str(job.job_id)], check=False, capture_output=True, text=True
            )
            job.cancel(check=False)
            pytest.fail(f"Slurm job {job.job_id} did not finish within {timeout_s:g} s:\n{queue.stdout}")
        time.sleep(0.5)
    return job.result()
