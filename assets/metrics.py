"""Metrics, the same (model, task) partitions: each metric and filter with its error bars."""
import warnings
from typing import Any

import dagster as dg
from tabulate import tabulate

from assets.check_results import CheckEvents, multi_check_outputs, spec_evaluations, validations
from assets.generations import eval_run_id
from assets.grades import grades, run_grades
from assets.partition_metadata import PartitionMetadata
from assets.placement import placement
from eval_pipeline import runs
from eval_pipeline.quality.checks import check_metrics_by_partition
from eval_pipeline.results.metrics import metrics_path, run_metrics_object, write_partition_metrics
from eval_pipeline.results.report import markdown
from eval_pipeline.runs.records import not_graded
from eval_pipeline.schedules.outcomes import regression_settings
from eval_pipeline.schedules.regressions import compare_run
from eval_pipeline.service.partitions import generation_partitions_def, split_key
from resources import CatalogResource, LakeResource


@dg.asset(partitions_def=generation_partitions_def, deps=[grades],
          backfill_policy=dg.BackfillPolicy.single_run(), group_name="evaluation", kinds={"python", "parquet"})
def metrics(context: dg.AssetExecutionContext, catalog: CatalogResource, lake: LakeResource) -> None:
    """Per (metric, filter) of a partition: mean, standard error, 95% interval, n and failed samples."""
    run_id = eval_run_id(context, catalog, lake, create=False)
    tables = {}
    for key in context.partition_keys:
        mk, tk = split_key(key)
        part = runs.partition_by_keys(catalog.catalog, run_id, mk, tk)
        table = write_partition_metrics(catalog.catalog, lake.lake, run_id, part.model, part.task_id)
        rows = [[r["metric"], r["filter"], _fmt(r["value"]), _fmt(r["stderr"]), _interval(r), r["n"], r["failed"]]
                for r in table.to_pylist()]
        tables[key] = tabulate(rows, headers=["metric", "filter", "value", "stderr", "95% CI", "n", "failed"],
                               tablefmt="github")
    report = run_report_so_far(catalog.catalog, lake.lake, run_id)
    metadata = PartitionMetadata(context)
    where = placement()
    for key, table in tables.items():
        metadata.add(key, {
            "eval_run_id": run_id, "path": dg.MetadataValue.path(metrics_path(run_id, *split_key(key))),
            "metrics": dg.MetadataValue.md(table), "run_report": dg.MetadataValue.md(report), **where})


def run_report_so_far(catalog, lake, run_id: str) -> str:
    """The run's report over every partition with metrics yet (all of them by its last Dagster run). Its
    heading counts those partitions instead of the run's status: the run completes only after this
    asset's last partition, so its status here would always read in_progress."""
    parts = runs.run_partitions(catalog, run_id)
    paths = [p for p in (metrics_path(run_id, q.model_key, q.task_key) for q in parts) if lake.exists(p)]
    with catalog.session() as s:
        skipped = not_graded(s, parts)
    return markdown({**runs.get_run(catalog, run_id, partitions=True),
                     "status": f"metrics for {len(paths)} of {len(parts)} partitions",
                     "metrics": run_metrics_object(lake, paths, skipped)})


def _fmt(x) -> str:
    return "" if x is None else f"{x:.4f}"


def _interval(row: dict) -> str:
    return "" if row["ci_low"] is None else f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]"


with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13; we rely on them knowingly
    warnings.simplefilter("ignore", dg.PreviewWarning)
    METRICS_CHECKS = [
        dg.AssetCheckSpec("metrics_valid", asset=metrics, partitions_def=generation_partitions_def,
                          description="stderr >= 0, n equals the graded rows, the interval contains the value "
                                      "(per partition)."),
        dg.AssetCheckSpec("no_regression", asset=metrics, partitions_def=generation_partitions_def, blocking=False,
                          description="A scheduled run's partitions against the schedule's previous completed run "
                                      "and the imported baseline: WARN when a metric dropped significantly."),
    ]

    @dg.multi_asset_check(specs=METRICS_CHECKS)
    def metrics_checks(context: dg.AssetCheckExecutionContext, catalog: CatalogResource,
                       lake: LakeResource) -> CheckEvents:
        """metrics_valid and no_regression in one step: a step of its own cost each about a CPU second of a
        worker's (bench/scale), and both read the run's metrics."""
        valid, regression = METRICS_CHECKS
        run_id = eval_run_id(context, catalog, lake, create=False)
        keys = list(context.partition_keys)
        graded = run_grades(catalog, lake, run_id, keys, ["filter", "metric", "score", "error"])
        checked = check_metrics_by_partition({
            key: (lake.lake.read_table(metrics_path(run_id, *split_key(key))).to_pandas(), graded[key])
            for key in keys})
        yield from spec_evaluations(context, valid, validations([(key, checked[key], {}) for key in keys]))
        yield from spec_evaluations(context, regression, _regressions(catalog, lake, run_id, keys),
                                    dg.AssetCheckSeverity.WARN)
        yield from multi_check_outputs(context)


def _regressions(catalog: CatalogResource, lake: LakeResource, run_id: str | None,
                 keys: list[str]) -> list[tuple[str, bool, dict[str, Any], str]]:
    """no_regression's results: a scheduled run's partitions against the schedule's previous completed run
    and the imported baseline, failed (WARN) where a metric dropped significantly (Benjamini-Hochberg over
    the run's comparisons, eval_pipeline/schedules/regressions.py). Runs no schedule made pass with nothing
    compared."""
    settings = regression_settings(catalog.catalog, run_id) if run_id else None
    if run_id is None or settings is None:
        note = "not a scheduled run: nothing compared"
        return [(k, True, {"summary": note}, note) for k in keys]
    previous, comparisons = compare_run(catalog.catalog, lake.lake, run_id, alpha=settings[0], min_drop=settings[1])
    results = []
    for key in keys:
        mine = [c for c in comparisons if c["partition_key"] == key]
        found = [{k: c[k] for k in ("metric", "filter", "against", "value", "against_value", "difference",
                                    "p_adjusted")} for c in mine if c["regression"]]
        summary = f"{len(found)} regressions in {len(mine)} comparisons"
        results.append((key, not found, {
            "summary": summary, "previous_run_id": previous or "", "comparisons": len(mine),
            "regressions": dg.MetadataValue.json(found), "alpha": settings[0], "min_drop": settings[1]}, summary))
    return results
