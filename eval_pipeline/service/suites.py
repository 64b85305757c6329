"""Suite actions: suites and versions written from a manifest, and deleting a suite, each recorded in
Dagster (a runless materialisation of `suite_versions`, the suite's dynamic partition)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from eval_pipeline import runs
from eval_pipeline.errors import Conflict
from eval_pipeline.historical.reading import metrics_frame
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.lineage import report_suite_version
from eval_pipeline.service.partitions import SUITE
from eval_pipeline.stores.runtime import Runtime
from eval_pipeline.suites import authoring, versions
from eval_pipeline.suites import tasks as suite_tasks


def create_suite(rt: Runtime, body: dict[str, Any], *, org_id: str, team_id: str, created_by: str | None = None,
                 hub_token: str | None = None) -> dict[str, Any]:
    """A suite and its version 1 from a manifest of tasks (MKA1's EvalSuiteManifest) whose datasets are Hub
    dataset repos, read with `hub_token` for this call only. Returns `eval.suite`. Raises InvalidInput
    naming the field, SourceAuthError or SourceUnavailable for the Hub; nothing is written then."""
    suite = authoring.create_suite(rt.catalog, rt.lake, body, org_id=org_id, team_id=team_id,
                                   created_by=created_by, hub_token=hub_token)
    report_suite_version(dagster_instance(rt), suite["id"], suite["latest_version"], None)
    return suite


def create_suite_version(rt: Runtime, suite_id: str, body: dict[str, Any], *, org_id: str,
                         created_by: str | None = None, hub_token: str | None = None) -> dict[str, Any]:
    """The suite's next version from a manifest. Returns `eval.suite.version`. Raises NotFound (another
    org's suite too) and what create_suite raises."""
    version = authoring.create_suite_version(rt.catalog, rt.lake, suite_id, body, org_id=org_id,
                                             created_by=created_by, hub_token=hub_token)
    report_suite_version(dagster_instance(rt), suite_id, version["version"], None)
    return version


def delete_suite(rt: Runtime, suite_id: str, *, org_id: str) -> dict[str, Any]:
    """Delete a suite with its versions, imported history and runs, and its Dagster partition. Returns
    `eval.suite.deleted` with the number of runs deleted. Raises NotFound, or Conflict while one of its
    runs still works (nothing is deleted then)."""
    versions.get_suite(rt.catalog, suite_id, org_id=org_id, versions=False)  # 404 for another org's
    suite_runs = runs.suite_runs(rt.catalog, suite_id)
    busy = [run_id for run_id, status in suite_runs if status not in runs.TERMINAL]
    if busy:
        raise Conflict(f"run {busy[0]} of this suite is still working: cancel it first")
    for run_id, _ in suite_runs:
        runs.delete_run(rt.catalog, rt.lake, run_id, org_id=org_id)
    authoring.delete_suite_records(rt.catalog, rt.lake, suite_id)
    instance = dagster_instance(rt)
    if instance.has_dynamic_partition(SUITE, suite_id):
        instance.delete_dynamic_partition(SUITE, suite_id)
    return {"id": suite_id, "object": "eval.suite.deleted", "deleted": True, "deleted_runs": len(suite_runs)}
def list_suites(
    rt: Runtime,
    *,
    org_id: str | None = None,
    created_by: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """`eval.suite` objects, oldest first, after the suite `after` (all of them without `limit`)."""
    return versions.list_suites(rt.catalog, org_id=org_id, created_by=created_by, after=after, limit=limit)


def get_suite(rt: Runtime, suite_id: str, *, org_id: str | None = None, versions_too: bool = True) -> dict[str, Any]:
    """`eval.suite` (with its versions when `versions_too`). Raises NotFound."""
    return versions.get_suite(rt.catalog, suite_id, org_id=org_id, versions=versions_too)


def get_suite_version(rt: Runtime, suite_id: str, version: int, *, org_id: str | None = None) -> dict[str, Any]:
    """`eval.suite.version`. Raises NotFound."""
    return versions.get_suite_version(rt.catalog, suite_id, version, org_id=org_id)


def list_tasks(rt: Runtime) -> list[dict[str, Any]]:
    """Every task of the catalog, with its current version and gradability."""
    return suite_tasks.list_tasks(rt.catalog)


def imported_metrics(rt: Runtime, *, suite_id: str | None = None, import_id: str | None = None) -> pd.DataFrame:
    """The imported historical metrics, one row per (model, task, metric, filter): value, stderr, n and
    whether the mean of the imported per-sample values recomputes the value."""
    return metrics_frame(rt.catalog, import_id=import_id, suite_id=suite_id)

