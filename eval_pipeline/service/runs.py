"""Eval run actions. Each does the domain work and its Dagster effects, so that every front door (the
three HTTP APIs, the CLI, the server's worker) ends in the same state."""
from __future__ import annotations

from typing import Any

import dagster as dg

from eval_pipeline import runs
from eval_pipeline.runs.records import RunObject
from eval_pipeline.runs.request import RunRequest
from eval_pipeline.runs.rerun import rerun_failed as _rerun_failed
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import QUIET, execute_in_process, stop_dagster_runs
from eval_pipeline.stores.runtime import Runtime


def create_run(rt: Runtime, body: dict[str, Any] | RunRequest, *, origin: str = "cli", org_id: str | None = None,
               team_id: str | None = None, created_by: str | None = None,
               idempotency_key: str | None = None) -> RunObject:
    """Validate and record a run (the brief's `eval.run` request) with its planned (model, task)
    partitions, queued for the `queued_runs` sensor or a server's worker. Returns the `eval.run` object.
    Raises InvalidInput (naming the field), NotFound (suite, model), Conflict (an Idempotency-Key reused
    for another request); nothing is written then."""
    return runs.create_run(rt.catalog, rt.lake, body, origin=origin, org_id=org_id, team_id=team_id,
                           created_by=created_by, idempotency_key=idempotency_key)


def execute_run(rt: Runtime, run_id: str, job: dg.JobDefinition) -> RunObject:
    """Execute the run's unfinished partitions here, as Dagster runs of `job` recorded in the instance
    (no daemon), and return the run with its partitions once it is terminal or stopped."""
    execute_in_process(dagster_instance(rt), rt.catalog, rt.lake, run_id, job, run_config=QUIET)
    return runs.get_run(rt.catalog, run_id, partitions=True)


def cancel_run(rt: Runtime, run_id: str, *, org_id: str | None = None) -> RunObject:
    """Stop the run: a queued run is cancelled at once, a running one is `cancelling` until its partitions
    stop after their chunk in flight; its Dagster runs not yet finished are cancelled or terminated.
    Returns the run as the cancel left it. Raises NotFound, or Conflict for a run already terminal."""
    run = runs.cancel_run(rt.catalog, run_id, org_id=org_id)
    stop_dagster_runs(dagster_instance(rt), run_id)
    return run


def retry_run(rt: Runtime, run_id: str, *, org_id: str | None = None) -> RunObject:
    """Queue a failed run again; the chunks it wrote are kept. Raises NotFound, or Conflict unless failed."""
    return runs.retry_run(rt.catalog, run_id, org_id=org_id)


def resume_run(rt: Runtime, run_id: str, *, requeue: bool = True) -> RunObject:
    """Take up a failed or interrupted run: its unfinished partitions go back to pending (the chunks they
    wrote are kept) and the run is queued for the sensor, or, with `requeue=False`, left in_progress for
    `execute_run` here. Raises NotFound, or Conflict for a completed, cancelled or cancelling run."""
    run = runs.resume_run(rt.catalog, run_id)
    if not requeue:
        return run
    runs.requeue(rt.catalog, run_id)
    return runs.get_run(rt.catalog, run_id)


def rerun_failed(rt: Runtime, run_id: str, *, org_id: str | None = None) -> RunObject:
    """Queue a finished run again for its failed samples only. Raises NotFound, or Conflict when the run is
    not finished or has no failed sample."""
    return _rerun_failed(rt.catalog, rt.lake, run_id, org_id=org_id)


def delete_run(rt: Runtime, run_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """Delete a terminal run's catalog rows and lake files (Dagster keeps its own history of the run).
    Returns `eval.run.deleted`. Raises NotFound, or Conflict for a run still working."""
    return runs.delete_run(rt.catalog, rt.lake, run_id, org_id=org_id)


def update_run(rt: Runtime, run_id: str, changes: dict[str, Any], *, org_id: str | None = None) -> RunObject:
    """Rename, describe or tag a run (any state). Raises NotFound, or InvalidInput naming the field."""
    return runs.update_run(rt.catalog, run_id, changes, org_id=org_id)


def execute_queued_run(rt: Runtime, job: dg.JobDefinition) -> str | None:
    """Take the oldest queued run and execute it here (see execute_run); its id, or None when none was
    queued. Taking is one conditional update, so a sensor beside this process never launches it too."""
    for run in runs.queued_runs(rt.catalog):
        if runs.mark_started(rt.catalog, run["id"]):
            execute_in_process(dagster_instance(rt), rt.catalog, rt.lake, run["id"], job, run_config=QUIET)
            return str(run["id"])
    return None

