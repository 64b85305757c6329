"""Imports made outside a Dagster run (CLI, API) recorded in Dagster as runless materializations."""
from __future__ import annotations

from typing import Any

import dagster as dg

from eval_pipeline.historical.request import ImportResult
from eval_pipeline.service.partitions import SUITE

HISTORICAL_RESULTS = dg.AssetKey("historical_results")
SUITE_VERSIONS = dg.AssetKey("suite_versions")


def import_metadata(result: ImportResult) -> dict[str, Any]:
    """What an import shows in the UI: its source, commit and counts (never a credential)."""
    return {
        "source_type": result.source["type"],
        "source_repo": result.source["repo"],
        "commit": result.source["revision"] or "",
        "suite_id": result.suite_id or "",
        "suite_version": result.suite_version,
        "discovered_files": result.discovered_files,
        "imported_runs": result.imported_runs,
        "skipped_runs": result.skipped_runs,
        "imported_samples": result.imported_samples,
        "rejected_files": len(result.errors),
    }


def report_import(instance: dg.DagsterInstance, result: ImportResult, historical: bool = True) -> None:
    """Record the import on `historical_results`, and a new suite version on `suite_versions`."""
    if result.dry_run or result.import_id is None:
        return
    if historical:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=HISTORICAL_RESULTS, metadata=import_metadata(result)))
    if result.created_suite_version and result.suite_id:
        report_suite_version(instance, result.suite_id, result.suite_version, result.import_id)


def report_suite_version(instance: dg.DagsterInstance, suite_id: str, version: int, import_id: str | None) -> None:
    """Record a suite version on its `suite_versions` partition (added when new); `import_id` None: a manifest."""
    if not instance.has_dynamic_partition(SUITE, suite_id):
        instance.add_dynamic_partitions(SUITE, [suite_id])
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=SUITE_VERSIONS, partition=suite_id,
        metadata={"suite_id": suite_id, "version": version, "import_id": import_id or "",
                  "source": "import" if import_id else "manifest"}))
