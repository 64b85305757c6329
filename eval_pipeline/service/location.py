"""Where the Definitions live, as workspace.yaml names them, and Dagster runs executed in this process
under that code location: the UI lists them in the Overview timeline and in their job's Runs tab, as
it lists runs the daemon launched (it finds a job's runs by the run's code-location origin)."""
from __future__ import annotations

import sys
from typing import Any, Mapping

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.execution.execution_result import ExecutionResult
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.workspace.load import location_origin_from_module_name

from eval_pipeline.stores.settings import Settings

DEFINITIONS_MODULE, DEFINITIONS_ATTRIBUTE = "eval_pipeline.orchestration.definitions", "defs"
LOCATION_NAME = "eval_pipeline"  # workspace.yaml's location_name
REPOSITORY_NAME = "__repository__"  # the repository a dg.Definitions object becomes
IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}  # a loaded engine stays warm


def daemon_run_config(settings: Settings) -> dict[str, Any]:
    """The run config of Dagster runs the daemon launches for us (a backfill's): every step in the run's
    own process, so a loaded engine stays warm, unless the deployment runs steps on Celery workers
    (theirs stay warm), whose executor takes its config from the code location."""
    return {} if settings.celery_config else IN_PROCESS


def job_origin(job_name: str) -> RemoteJobOrigin:
    """The origin the daemon gives runs of `job_name` in this workspace's code location."""
    location = location_origin_from_module_name(DEFINITIONS_MODULE, DEFINITIONS_ATTRIBUTE, None, LOCATION_NAME,
                                                sys.executable)
    return RemoteJobOrigin(repository_origin=RemoteRepositoryOrigin(code_location_origin=location,
                                                                    repository_name=REPOSITORY_NAME),
                           job_name=job_name)


def run_here(instance: dg.DagsterInstance, job: dg.JobDefinition, *, tags: Mapping[str, str] | None = None,
             run_config: Mapping[str, Any] | None = None) -> ExecutionResult:
    """Create a Dagster run of `job` under this code location and execute it here, every step in this
    process (the in-process executor), recorded in `instance` like any other run. Returns its result
    (success, run_id, events); a step's failure is in the result, not raised. Where the code location's
    executor is another (Celery, in a deployment), this run alone executes in process all the same."""
    config = {**(run_config or {}), **IN_PROCESS}
    if job.executor_def.name != dg.multi_or_in_process_executor.name:
        job = job.with_executor_def(dg.multi_or_in_process_executor)
    run = instance.create_run_for_job(job_def=job, run_config=config, tags=dict(tags or {}),
                                      remote_job_origin=job_origin(job.name))
    return execute_run(InMemoryJob(job), run, instance)
