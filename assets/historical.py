"""Historical lm-eval results imported from the sources the deployment lists."""
import os
from pathlib import Path
from typing import Optional

import dagster as dg
from tabulate import tabulate

from eval_pipeline.errors import EvalPipelineError
from eval_pipeline.historical.importer import import_results
from eval_pipeline.historical.reading import latest_import_id, metrics_frame, samples_frame
from eval_pipeline.historical.source_config import load_import_requests
from eval_pipeline.quality.checks import Validation, check_agreement, check_samples
from eval_pipeline.service.lineage import import_metadata, report_import
from eval_pipeline.stores.settings import Settings
from resources import CatalogResource, HubResource, LakeResource


class HistoricalImportConfig(dg.Config):
    """Run config of `historical_results`: the YAML file listing the sources to import."""

    sources_file: Optional[str] = None  # default: $EVAL_PIPELINE_SOURCES, else <home>/sources.yaml


def sources_path(config: HistoricalImportConfig) -> Path:
    """The sources file: run config, else $EVAL_PIPELINE_SOURCES, else <home>/sources.yaml."""
    return Path(config.sources_file or os.environ.get("EVAL_PIPELINE_SOURCES")
                or Settings.from_env().home / "sources.yaml")


@dg.asset(group_name="historical", kinds={"python", "parquet"})
def historical_results(
    context: dg.AssetExecutionContext,
    config: HistoricalImportConfig,
    catalog: CatalogResource,
    lake: LakeResource,
    hub: HubResource,
) -> dg.MaterializeResult:
    """lm-eval results and samples imported into suites from the configured sources."""
    path = sources_path(config)
    requests = load_import_requests(path) if path.exists() else []
    if not requests:
        context.log.warning(f"no sources configured ({path} is missing or empty)")
    rows, totals = [], {"imported_runs": 0, "skipped_runs": 0, "imported_samples": 0, "rejected_files": 0}
    failed = []
    for i, request in enumerate(requests):
        try:
            result = import_results(catalog.catalog, lake.lake, request, hub_token=hub.token,
                                    hub_endpoint=hub.resolved_endpoint, s3_endpoint_url=lake.s3_endpoint)
        except EvalPipelineError as e:  # one bad source must not keep the others out
            context.log.error(f"{path}: imports[{i}] failed: {e}")
            failed.append(f"imports[{i}]: {e}")
            continue
        report_import(context.instance, result, historical=False)
        meta = import_metadata(result)
        rows.append(meta)
        for key in totals:
            totals[key] += meta[key]
        for err in result.errors:
            context.log.warning(f"rejected {err['path']}: {err['reason']}")
    table = tabulate([[r["source_repo"], r["commit"][:12], r["suite_id"], r["suite_version"], r["imported_runs"],
                       r["skipped_runs"], r["imported_samples"], r["rejected_files"]] for r in rows],
                     headers=["source", "commit", "suite", "version", "runs", "skipped", "samples", "rejected"],
                     tablefmt="github")
    if failed:
        raise dg.Failure(description="; ".join(failed), metadata={"imported_sources": len(rows), **totals})
    return dg.MaterializeResult(metadata={
        "sources_file": str(path), "imports": dg.MetadataValue.md(table), **totals,
    })


def _check_result(v: Validation) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=v.success, metadata={"expectations": v.evaluated,
                                                           "summary": v.summary()})


@dg.asset_check(asset=historical_results, blocking=True)
def historical_samples_valid(catalog: CatalogResource, lake: LakeResource) -> dg.AssetCheckResult:
    """The latest import's samples: doc ids present and unique per run, task and filter; targets present;
    per-sample scores finite."""
    import_id = latest_import_id(catalog.catalog)
    if import_id is None:
        return dg.AssetCheckResult(passed=True, metadata={"summary": "nothing imported yet"})
    return _check_result(check_samples(samples_frame(catalog.catalog, lake.lake, import_id)))


@dg.asset_check(asset=historical_results)
def historical_metrics_agree(catalog: CatalogResource) -> dg.AssetCheckResult:
    """Reported mean metrics equal the mean of the imported per-sample values (within 1e-6)."""
    import_id = latest_import_id(catalog.catalog)
    if import_id is None:
        return dg.AssetCheckResult(passed=True, metadata={"summary": "nothing imported yet"})
    return _check_result(check_agreement(metrics_frame(catalog.catalog, import_id=import_id)))
