"""Grades, the same (model, task) partitions as generations: every sample scored by the task's rules."""
import warnings
from collections.abc import Sequence

import dagster as dg
import pandas as pd
import pyarrow as pa
from tabulate import tabulate

from assets.check_results import CheckEvents, validation_evaluations
from assets.generations import eval_run_id, generations
from assets.partition_metadata import PartitionMetadata
from assets.placement import placement
from eval_pipeline import runs
from eval_pipeline.grading.embedding import embedding_partition
from eval_pipeline.grading.grade_files import active_grade_files
from eval_pipeline.grading.judge import judge_partition
from eval_pipeline.grading.rule_grades import grade_partition
from eval_pipeline.quality.checks import check_grades_by_partition
from eval_pipeline.service.partitions import generation_partitions_def, split_key
from eval_pipeline.stores.catalog import tables as t
from resources import CatalogResource, LakeResource


@dg.asset(partitions_def=generation_partitions_def, deps=[generations],
          backfill_policy=dg.BackfillPolicy.single_run(), group_name="evaluation", kinds={"python", "parquet"})
def grades(context: dg.AssetExecutionContext, catalog: CatalogResource, lake: LakeResource) -> None:
    """Per-sample scores (metric x filter) of a partition's generations, as lm-evaluation-harness grades."""
    run_id = eval_run_id(context, catalog, lake, create=False)
    metadata = PartitionMetadata(context)
    for key in context.partition_keys:
        part = runs.partition_by_keys(catalog.catalog, run_id, *split_key(key))
        report = grade_partition(catalog.catalog, lake.lake, run_id, part.model, part.task_id)
        judged = judge_partition(catalog.catalog, lake.lake, run_id, part.model, part.task_id)
        embedded = embedding_partition(catalog.catalog, lake.lake, run_id, part.model, part.task_id)
        table = tabulate([[m, f, f"{v:.4f}"] for (m, f), v in report.means.items()],
                         headers=["metric", "filter", "mean"], tablefmt="github")
        md = {"eval_run_id": run_id, "docs": report.docs, "rows": report.rows, "failed_docs": report.failed_docs,
              "path": dg.MetadataValue.path(report.path), "means": dg.MetadataValue.md(table),
              # native | lm-eval-registry | predict-only | not-gradable, and why
              "gradability": report.gradability.status, "gradability_reason": report.gradability.reason or "",
              **placement()}
        if judged:
            md |= {"judge_path": dg.MetadataValue.path(judged.path), "judge_failed": judged.failed}
        if embedded:
            md["embedding_path"] = dg.MetadataValue.path(embedded)
        metadata.add(key, md)


with warnings.catch_warnings():  # partitioned checks are "preview" in 1.13; we rely on them knowingly
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(asset=grades, partitions_def=generation_partitions_def)
    def grades_valid(context: dg.AssetCheckExecutionContext, catalog: CatalogResource,
                     lake: LakeResource) -> CheckEvents:
        """One grade per (doc, filter, metric); scores within their metric's range; judged grades carry
        their rubric's hash (per partition)."""
        run_id = eval_run_id(context, catalog, lake, create=False)
        found = run_grades(catalog, lake, run_id, context.partition_keys, CHECKED_COLUMNS)
        checked = check_grades_by_partition(found)
        return validation_evaluations(context, [(key, checked[key], {"grades": len(g)}) for key, g in found.items()])


# the columns the checks read: `stats` (a list per row) and `rationale` are the costly ones to convert
CHECKED_COLUMNS = ["doc_id", "filter", "metric", "score", "grader", "error", "rubric_sha256"]


def run_grades(catalog: CatalogResource, lake: LakeResource, run_id: str, keys: Sequence[str],
               columns: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every grade that counts for each partition key of `keys` (rules, current judge, embedding, human),
    as pandas frames of GRADES_SCHEMA's `columns` (default: all)."""
    with catalog.catalog.session() as s:
        run = s.get(t.Run, run_id)
        paths = {key: active_grade_files(lake.lake, run, *split_key(key)) for key in keys}
    return {key: pa.concat_tables([lake.lake.read_table(p, columns=columns) for p in found]).to_pandas()
            for key, found in paths.items()}
