"""Generations, one partition per (model, task): every request of the task answered by the model."""
import warnings

import dagster as dg
import pandas as pd

from assets.check_results import CheckEvents, multi_check_outputs, spec_evaluations, validations
from assets.partition_metadata import PartitionMetadata
from assets.placement import placement
from assets.suites import suite_versions
from eval_pipeline import runs
from eval_pipeline.execution.generate import generate_partition
from eval_pipeline.quality.checks import (
    check_generation_health_by_partition,
    check_generations_by_partition,
    generation_rates,
)
from eval_pipeline.service.launching import eval_run_of, origin_of
from eval_pipeline.service.partitions import generation_partitions_def, split_key
from resources import CatalogResource, GenerationThresholds, LakeResource

# Where this step runs in deployment: the Celery queue of GPU workers, or its own pod with one GPU.
GPU_OP_TAGS = {
    "dagster-celery/queue": "gpu",
    "dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}},
}


def eval_run_id(context, catalog: CatalogResource, lake: LakeResource, *, create: bool) -> str | None:
    """The eval run a Dagster run works for: its tag, or for a run launched from the UI without one
    (a backfill), the eval run recorded for that backfill (created by the asset on first sight)."""
    found = eval_run_of(catalog.catalog, context.run)
    if found or not create:
        return found
    keys = [split_key(k) for k in context.partition_keys]
    return runs.ensure_backfill_run(catalog.catalog, lake.lake, origin_of(context.run), keys)


@dg.asset(
    partitions_def=generation_partitions_def,
    deps=[dg.AssetDep(suite_versions, partition_mapping=dg.AllPartitionMapping())],
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    group_name="evaluation",
    kinds={"python", "parquet"},
)
def generations(context: dg.AssetExecutionContext, catalog: CatalogResource, lake: LakeResource) -> None:
    """Model outputs and loglikelihoods for every request of a task, chunked Parquet files in the lake.
    Materialised from the UI without an eval run (a backfill), it records one eval run for the backfill,
    'Dagster backfill <id>', on the latest suite version holding the tasks, with default settings: every
    doc, each task's own generation settings, the generation cache on, rule grades."""
    run_id = eval_run_id(context, catalog, lake, create=True)
    metadata = PartitionMetadata(context)
    where = placement()
    for key in context.partition_keys:
        part = runs.partition_by_keys(catalog.catalog, run_id, *split_key(key))
        report = generate_partition(catalog.catalog, lake.lake, run_id, part.model, part.task_id,
                                    dagster_run_id=context.run_id, log=context.log.info)
        if report.status != "done":
            raise dg.Failure(f"eval run {run_id} stopped taking work ({report.status}) at partition {key}",
                             metadata={"eval_run_id": run_id})
        metadata.add(key, {
            "eval_run_id": run_id, "model": part.model, "task_id": part.task_id, "rows": report.rows,
            "generated": report.generated, "from_cache": report.cached, "failed": report.failed,
            "empty": report.empty, "chunks_written": report.chunks_written,
            "chunks_skipped": report.chunks_skipped, "engine_loaded": report.engine_loaded,
            "engine_loads": report.engine_loads, **where,
            "seconds": round(report.seconds, 3), "generation_seconds": round(report.generation_seconds, 3),
            # this execution's cost: engine busy time x the GPUs it held; the partition's tokens so far
            "gpu_seconds": round(report.gpu_seconds, 3), "input_tokens": report.input_tokens,
            "output_tokens": report.output_tokens,
            "path": dg.MetadataValue.path(report.chunk_paths[0].rsplit("/", 1)[0]) if report.chunk_paths else "",
            "engine": dg.MetadataValue.json(report.engine or {}),
        })


def _partition_rows(context, catalog: CatalogResource, lake: LakeResource) -> list[tuple[str, int, pd.DataFrame]]:
    run_id = eval_run_id(context, catalog, lake, create=False)
    out = []
    for key in context.partition_keys:
        part = runs.partition_by_keys(catalog.catalog, run_id, *split_key(key))
        frames = [lake.lake.read_table(c["path"], columns=["request_index", "request_kind", "output_text", "error"])
                  .to_pandas() for c in part.chunks]
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            {"request_index": [], "request_kind": [], "output_text": [], "error": []})
        out.append((key, part.planned, rows))
    return out


with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13; we rely on them knowingly
    warnings.simplefilter("ignore", dg.PreviewWarning)
    GENERATION_CHECKS = [
        dg.AssetCheckSpec("generations_complete", asset=generations, blocking=True,
                          partitions_def=generation_partitions_def,
                          description="One generation row per planned request, no request twice (per partition)."),
        dg.AssetCheckSpec("generations_healthy", asset=generations, blocking=True,
                          partitions_def=generation_partitions_def,
                          description="Failed requests and empty outputs at most the configured rates (per partition: "
                                      "the measured rates beside their thresholds)."),
    ]

    @dg.multi_asset_check(specs=GENERATION_CHECKS)
    def generation_checks(context: dg.AssetCheckExecutionContext, catalog: CatalogResource, lake: LakeResource,
                          thresholds: GenerationThresholds) -> CheckEvents:
        """generations_complete and generations_healthy in one step: both read the same rows, and a step of
        its own cost each about a CPU second of a worker's (bench/scale)."""
        complete, healthy = GENERATION_CHECKS
        max_failed, max_empty = thresholds.limits()
        found = _partition_rows(context, catalog, lake)
        counted = check_generations_by_partition({key: (rows, planned) for key, planned, rows in found})
        rated = check_generation_health_by_partition({key: rows for key, _, rows in found}, max_failed, max_empty)
        yield from spec_evaluations(context, complete, validations([
            (key, counted[key], {"planned": planned, "rows": len(rows)}) for key, planned, rows in found]))
        yield from spec_evaluations(context, healthy, validations([
            (key, rated[key], {**generation_rates(rows), "max_failed_rate": max_failed, "max_empty_rate": max_empty})
            for key, _, rows in found]))
        yield from multi_check_outputs(context)
