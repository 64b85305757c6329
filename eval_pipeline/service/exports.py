"""Export actions: an export task of a finished run, executed here as the export job's Dagster run, or
queued for the `queued_export_tasks` sensor or a server's worker."""
from __future__ import annotations

from typing import Any

import dagster as dg

from eval_pipeline.exports import tasks
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import QUIET
from eval_pipeline.service.launching import execute_export as _execute_export
from eval_pipeline.stores.runtime import Runtime

EXPORT_CONTENT = tasks.CONTENT  # what a bundle may hold: prompt, prediction, completion, ...
EXPORT_FORMATS = tasks.FORMATS  # bundle, lm-eval


def create_export(rt: Runtime, body: dict[str, Any]) -> dict[str, Any]:
    """Record an export task `{run_id, storage_type, bucket?, prefix?, content?, format}`, `queued` for the
    `queued_export_tasks` sensor or a server's worker (or `execute_export` here). Returns `eval.export`.
    Raises InvalidInput naming the field, NotFound (run), Conflict (a run not completed)."""
    return tasks.create_export(rt.catalog, body)


def execute_export(rt: Runtime, export_id: str, job: dg.JobDefinition) -> dict[str, Any]:
    """Materialise a queued export task here, as a Dagster run of `job` recorded in the instance; returns
    it finished (`succeeded` or `failed`). Raises NotFound."""
    _execute_export(dagster_instance(rt), rt.catalog, export_id, job, QUIET)
    return tasks.get_export(rt.catalog, export_id)


def execute_queued_export(rt: Runtime, job: dg.JobDefinition) -> str | None:
    """Claim the oldest queued export task and materialise it here; its id, or None when none was queued
    (a sensor beside this process never takes the same one: claiming is one conditional update)."""
    for export_id in tasks.queued_exports(rt.catalog):
        if tasks.claim_export(rt.catalog, export_id):
            _execute_export(dagster_instance(rt), rt.catalog, export_id, job, QUIET)
            return export_id
    return None
def get_export(rt: Runtime, export_id: str) -> dict[str, Any]:
    """`eval.export`. Raises NotFound."""
    return tasks.get_export(rt.catalog, export_id)

