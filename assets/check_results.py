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
    own rule, applied once the step has yielded everything), so downstream assets of the run are not
    materialised."""
    yield from spec_evaluations(context, context.check_specs[0], results, severity)
    yield dg.Output(None)


def spec_evaluations(context: dg.AssetCheckExecutionContext, spec: dg.AssetCheckSpec,
                     results: list[tuple[str, bool, Mapping[str, Any], str]],
                     severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
                     ) -> Iterator[dg.AssetCheckEvaluation]:
    """The evaluations of partition_evaluations for one check `spec` of the step, without an output: a
    multi-asset check yields those of each spec, then multi_check_outputs."""
    targets = _targets(context.instance, spec.asset_key, [key for key, *_ in results])
    for key, passed, metadata, description in results:
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key, check_name=spec.name, passed=passed, metadata=dict(metadata),
            severity=severity, description=description, blocking=spec.blocking, partition=key,
            target_materialization_data=targets.get(key))


def multi_check_outputs(context: dg.AssetCheckExecutionContext) -> Iterator[dg.Output]:
    """A multi-asset check's (empty) outputs, one per check spec (dg.multi_asset_check names them by
    the spec's python identifier)."""
    for spec in context.check_specs:
        yield dg.Output(None, output_name=spec.get_python_identifier())


def validations(validated: list[tuple[str, Validation, Mapping[str, Any]]]
                ) -> list[tuple[str, bool, Mapping[str, Any], str]]:
    """Great Expectations validations (partition key, validation, extra metadata such as thresholds and
    measured rates) as partition results."""
    return [(key, v.success, {"summary": v.summary(), "expectations": v.evaluated,
                              "failures": dg.MetadataValue.json(v.failures), **extra}, v.summary())
            for key, v, extra in validated]


def validation_evaluations(context: dg.AssetCheckExecutionContext,
                           validated: list[tuple[str, Validation, Mapping[str, Any]]]) -> CheckEvents:
    """Per-partition evaluations of Great Expectations validations: (partition key, validation, extra
    metadata such as thresholds and measured rates)."""
    return partition_evaluations(context, validations(validated))
