"""Asset check results recorded per partition, so each (model, task) cell of the grid shows its own.

Dagster 1.13's AssetCheckResult carries no partition: in a run over a partition range it is recorded once,
unpartitioned, and the UI then shows every partition of the range as skipped. Its event class,
AssetCheckEvaluation, does carry one, and Dagster records each yielded evaluation against the planned
(check, partition) row of the run, blocking included. So a check here yields one evaluation per partition
of its Dagster run, then the check's (empty) output."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from eval_pipeline.quality.checks import Validation

CheckEvents = Iterator[dg.AssetCheckEvaluation | dg.Output]


def _target(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str
            ) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The partition's latest materialisation, which the evaluation is about."""
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1).records
    if not found:
        return None
    return AssetCheckEvaluationTargetMaterializationData(storage_id=found[0].storage_id, run_id=found[0].run_id,
                                                         timestamp=found[0].timestamp)


def partition_evaluations(context: dg.AssetCheckExecutionContext,
                          results: list[tuple[str, bool, Mapping[str, Any], str]],
                          severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> CheckEvents:
    """One AssetCheckEvaluation per (partition key, passed, metadata, description) of `results`, for the
    check being executed, then its output. A failed blocking ERROR evaluation fails the step (Dagster's
    own rule), so downstream assets of the run are not materialised."""
    spec = context.check_specs[0]
    for key, passed, metadata, description in results:
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key, check_name=spec.name, passed=passed, metadata=dict(metadata),
            severity=severity, description=description, blocking=spec.blocking, partition=key,
            target_materialization_data=_target(context.instance, spec.asset_key, key))
    yield dg.Output(None)


def validation_evaluations(context: dg.AssetCheckExecutionContext,
                           validations: list[tuple[str, Validation, Mapping[str, Any]]]) -> CheckEvents:
    """Per-partition evaluations of Great Expectations validations: (partition key, validation, extra
    metadata such as thresholds and measured rates)."""
    return partition_evaluations(context, [
        (key, v.success, {"summary": v.summary(), "expectations": v.evaluated,
                          "failures": dg.MetadataValue.json(v.failures), **extra}, v.summary())
        for key, v, extra in validations])
