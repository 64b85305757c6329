"""Reads of runs: one run, a page of runs, a search, a summary, the artifacts. No Dagster here, so a
CLI command that only reads never imports it."""
from __future__ import annotations

from typing import Any

from eval_pipeline import runs
from eval_pipeline.runs.records import RunObject
from eval_pipeline.runs.search import RunPage, RunSummary
from eval_pipeline.runs.search import run_summary as _run_summary
from eval_pipeline.runs.search import search_runs as _search_runs
from eval_pipeline.stores.runtime import Runtime


def get_run(rt: Runtime, run_id: str, *, partitions: bool = False, org_id: str | None = None) -> RunObject:
    """The `eval.run` object (with each (model, task) partition's progress when `partitions`). Raises
    NotFound, also for another org's run when `org_id` is given."""
    return runs.get_run(rt.catalog, run_id, partitions=partitions, org_id=org_id)


def list_runs(
    rt: Runtime,
    *,
    status: str | None = None,
    suite_id: str | None = None,
    limit: int = 20,
    after: str | None = None,
    org_id: str | None = None,
    suite_version: int | None = None,
    created_by: str | None = None,
) -> list[RunObject]:
    """Up to `limit` `eval.run` objects, newest first, after the run `after` (see runs.list_runs)."""
    return runs.list_runs(
        rt.catalog,
        status=status,
        suite_id=suite_id,
        limit=limit,
        after=after,
        org_id=org_id,
        suite_version=suite_version,
        created_by=created_by,
    )


def search_runs(
    rt: Runtime,
    *,
    org_id: str,
    eval_type: str,
    key_filter: str = "",
    marker: str = "",
    reverse: bool = False,
    limit: int = 10,
) -> RunPage:
    """A page of the org's runs of an eval type matching `key_filter` (see runs.search.search_runs)."""
    return _search_runs(
        rt.catalog,
        org_id=org_id,
        eval_type=eval_type,
        key_filter=key_filter,
        marker=marker,
        reverse=reverse,
        limit=limit,
    )


def run_summary(rt: Runtime, run_id: str, *, org_id: str | None = None) -> RunSummary:
    """The run as a listing shows it. Raises NotFound."""
    return _run_summary(rt.catalog, run_id, org_id=org_id)


def run_artifacts(rt: Runtime, run_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """`eval.artifacts`: the file ids of the run's report. Raises NotFound."""
    return runs.run_artifacts(rt.catalog, run_id, org_id=org_id)

