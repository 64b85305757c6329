"""One asset check result for the partitions a Dagster run covered, naming those that failed."""
import dagster as dg

from eval_pipeline.quality.checks import Validation


def partition_check_result(validations: list[tuple[str, Validation]]) -> dg.AssetCheckResult:
    """One check result for a Dagster run's partitions: passed when every (partition key, validation) did."""
    failing = {k: v.summary() for k, v in validations if not v.success}
    evaluated = sum(v.evaluated for _, v in validations)
    summary = (f"{len(failing)} of {len(validations)} partitions failing" if failing
               else f"{len(validations)} partitions, {evaluated} expectations met")
    return dg.AssetCheckResult(passed=not failing, metadata={
        "summary": summary, "partitions": len(validations), "failing": dg.MetadataValue.json(failing),
        "expectations": evaluated})
