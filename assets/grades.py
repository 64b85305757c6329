"""Grades, the same (model, task) partitions as generations: every sample scored by the task's rules."""
import warnings

import dagster as dg
from tabulate import tabulate

from assets.check_results import partition_check_result
from assets.generations import eval_run_id, generations
from eval_pipeline import runs
from eval_pipeline.grading.partition import grade_partition, grades_path
from eval_pipeline.partitions import generation_partitions_def, split_key
from eval_pipeline.quality import check_grades
from resources import CatalogResource, LakeResource


@dg.asset(partitions_def=generation_partitions_def, deps=[generations],
          backfill_policy=dg.BackfillPolicy.single_run(), group_name="evaluation", kinds={"python", "parquet"})
def grades(context: dg.AssetExecutionContext, catalog: CatalogResource, lake: LakeResource) -> None:
    """Per-sample scores (metric x filter) of a partition's generations, as lm-evaluation-harness grades."""
    run_id = eval_run_id(context, catalog, lake, create=False)
    for key in context.partition_keys:
        part = runs.partition_by_keys(catalog.catalog, run_id, *split_key(key))
        report = grade_partition(catalog.catalog, lake.lake, run_id, part.model, part.task_id)
        table = tabulate([[m, f, f"{v:.4f}"] for (m, f), v in report.means.items()],
                         headers=["metric", "filter", "mean"], tablefmt="github")
        context.add_asset_metadata({"eval_run_id": run_id, "docs": report.docs, "rows": report.rows,
                                    "failed_docs": report.failed_docs, "path": dg.MetadataValue.path(report.path),
                                    "means": dg.MetadataValue.md(table)}, partition_key=key)


with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13; we rely on them knowingly
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(asset=grades, partitions_def=generation_partitions_def)
    def grades_valid(context: dg.AssetCheckExecutionContext, catalog: CatalogResource,
                     lake: LakeResource) -> dg.AssetCheckResult:
        """One grade per (doc, filter, metric); scores of 0/1 metrics within [0, 1]."""
        run_id = eval_run_id(context, catalog, lake, create=False)
        return partition_check_result([
            (key, check_grades(lake.lake.read_table(grades_path(run_id, *split_key(key))).to_pandas()))
            for key in context.partition_keys])
