"""Suite versions, one partition per suite: published manifests of versions and their task inputs."""
import warnings

import dagster as dg
from tabulate import tabulate

from assets.historical import historical_results
from eval_pipeline.historical.reading import suite_inputs_frames
from eval_pipeline.quality.checks import check_suite_inputs
from eval_pipeline.service.partitions import suite_partitions_def
from eval_pipeline.suites.versions import publish_manifest
from resources import CatalogResource, LakeResource


@dg.asset(partitions_def=suite_partitions_def, deps=[historical_results], group_name="historical",
          kinds={"python", "json"})
def suite_versions(context: dg.AssetExecutionContext, catalog: CatalogResource,
                   lake: LakeResource) -> dg.MaterializeResult:
    """A suite's immutable versions, each listing its tasks at their versions with their inputs."""
    suite = publish_manifest(catalog.catalog, lake.lake, context.partition_key)
    latest = suite["versions"][-1] if suite["versions"] else None
    tasks = latest["manifest"]["tasks"] if latest else []
    table = tabulate([[t["name"], t["version"], t["n_docs"], t["request_kind"]] for t in tasks],
                     headers=["task", "version", "docs", "request kind"], tablefmt="github")
    return dg.MaterializeResult(metadata={
        "suite_id": suite["id"], "name": suite["name"], "latest_version": suite["latest_version"],
        "tasks": len(tasks), "docs": sum(t["n_docs"] for t in tasks),
        "manifest": f"suites/{suite['id']}/manifest.json", "latest_tasks": dg.MetadataValue.md(table),
    })


with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13; we rely on them knowingly
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(asset=suite_versions, partitions_def=suite_partitions_def, blocking=True)
    def suite_inputs_valid(context: dg.AssetCheckExecutionContext, catalog: CatalogResource,
                           lake: LakeResource) -> dg.AssetCheckResult:
        """The latest version: every task has inputs, prompts are non-empty, doc ids unique per task."""
        tasks, inputs = suite_inputs_frames(catalog.catalog, lake.lake, context.partition_key)
        v = check_suite_inputs(tasks, inputs)
        return dg.AssetCheckResult(passed=v.success, metadata={"expectations": v.evaluated,
                                                               "summary": v.summary(), "tasks": len(tasks)})
