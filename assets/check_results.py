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


def _targets(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: list[str]
             ) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each partition's latest materialisation, which its evaluation is about (partitions never
    materialised are left out): two queries for a run's partitions, not one per partition."""
    if not partitions:  # Dagster reads an empty set as every partition
        return {}
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(partitions))
    if not latest:
        return {}
    records = {r.storage_id: r for r in instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(latest.values())), limit=len(latest)).records}
    return {partition: AssetCheckEvaluationTargetMaterializationData(storage_id=r.storage_id, run_id=r.run_id,
                                                                     timestamp=r.timestamp)
            for partition, storage_id in latest.items() if (r := records.get(storage_id)) is not None}


def partition_evaluations(context: dg.AssetCheckExecutionContext,
                          results: list[tuple[str, bool, Mapping[str, Any], str]],
                          severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> CheckEvents:
    """One AssetCheckEvaluation per (partition key, passed, metadata, description) of `results`, for the
    check being executed, then its output. A failed blocking ERROR evaluation fails the step (Dagster's
    own rule), so downstream assets of the run are not materialised."""
    spec = context.check_specs[0]
    targets = _targets(context.instance, spec.asset_key, [key for key, *_ in results])
    for key, passed, metadata, description in results:
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key, check_name=spec.name, passed=passed, metadata=dict(metadata),
            severity=severity, description=description, blocking=spec.blocking, partition=key,
            target_materialization_data=targets.get(key))
    yield dg.Output(None)


def validation_evaluations(context: dg.AssetCheckExecutionContext,
                           validations: list[tuple[str, Validation, Mapping[str, Any]]]) -> CheckEvents:
    """Per-partition evaluations of Great Expectations validations: (partition key, validation, extra
    metadata such as thresholds and measured rates)."""
    return partition_evaluations(context, [
        (key, v.success, {"summary": v.summary(), "expectations": v.evaluated,
                          "failures": dg.MetadataValue.json(v.failures), **extra}, v.summary())
        for key, v, extra in validations])
