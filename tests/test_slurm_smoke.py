"""The one-node Slurm of ci/slurm/ runs what submitit submits (skips without Slurm or without submitit)."""

from __future__ import annotations

import os

import pytest
from slurm_cluster import require_slurm, result_within

pytestmark = pytest.mark.slurm


@pytest.fixture
def executor(tmp_path):
    require_slurm()
    submitit = pytest.importorskip("submitit")
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, cpus_per_task=1)
    return executor


def test_a_submitted_function_runs_as_a_job_of_the_requested_partition(executor):
    executor.update_parameters(slurm_partition="cpu")
    job = executor.submit(os.getenv, "SLURM_JOB_PARTITION")  # read in the job, not pickled here
    assert result_within(job) == "cpu"


def test_an_unknown_partition_is_rejected_by_sbatch(executor):
    from submitit.core.utils import FailedJobError

    executor.update_parameters(slurm_partition="no-such-partition")
    with pytest.raises(FailedJobError, match="Invalid partition name specified"):
        executor.submit(os.getpid)
