"""Export bundles, one partition per export task: a finished run's samples and metrics, published to
an S3-compatible bucket or the lake, with a check that the manifest's checksums verify."""
import dagster as dg

from assets.placement import placement
from eval_pipeline.exports.tasks import bundle_location, run_export, verify_bundle
from eval_pipeline.service.partitions import export_partitions_def
from eval_pipeline.stores.settings import Settings
from resources import CatalogResource, LakeResource


def lake_kind() -> str:
    """The Dagster kind of this deployment's lake, where `system` exports are written: s3 or filesystem."""
    return "s3" if Settings.from_env().lake_url.startswith("s3://") else "filesystem"


# An export reads one run's metrics partitions; which ones is data, not a static mapping, so the graph
# shows the dependency on all of them.
@dg.asset(partitions_def=export_partitions_def,
          deps=[dg.AssetDep("metrics", partition_mapping=dg.AllPartitionMapping())], group_name="evaluation",
          kinds={"parquet", lake_kind()})
def export_bundles(context: dg.AssetExecutionContext, catalog: CatalogResource, lake: LakeResource) -> None:
    """A run's bundle: samples.parquet, samples.jsonl, metrics.json (format bundle) or lm-eval's results and
    samples files per model (format lm-eval), and manifest.json (written last). Written to the lake
    (storage_type system; its kind is the lake's) or to the requester's S3 bucket (storage_type s3)."""
    export = run_export(catalog.catalog, lake.lake, context.partition_key, lake.export_s3_endpoint)
    files = export["files"] or []
    rows = (files[0].get("rows") if export["format"] == "bundle" and files else
            sum(f.get("rows") or 0 for f in files if f["name"] != "manifest.json"))
    context.add_output_metadata({
        "run_id": export["run_id"], "location": export["location"], "storage_type": export["storage_type"],
        "format": export["format"], "content": ", ".join(export["content"]), "rows": rows,
        "files": dg.MetadataValue.json({f["name"]: f["sha256"] for f in export["files"] or []}), **placement()})


@dg.asset_check(asset=export_bundles)
def bundle_checksums_valid(context: dg.AssetCheckExecutionContext, catalog: CatalogResource,
                           lake: LakeResource) -> dg.AssetCheckResult:
    """Every file the manifest lists is there and its sha256 matches."""
    (key,) = context.run.tags.get("dagster/partition", "").split(",")[:1] or [""]
    fs, folder = bundle_location(catalog.catalog, lake.lake, key, lake.export_s3_endpoint)
    problems = verify_bundle(fs, folder)
    summary = "; ".join(problems) if problems else "every file matches the manifest's sha256"
    return dg.AssetCheckResult(passed=not problems, metadata={"export_id": key, "summary": summary})
