"""From eval runs to Dagster runs: which Dagster runs a run needs, launching them (sensor or in-process),
and stopping them. One Dagster run per (eval run, model, contiguous block of task keys), so a model's
engine loads once per block on its worker."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import dagster as dg
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.execution.execution_result import ExecutionResult

from eval_pipeline import runs
from eval_pipeline.execution.finish import complete_if_done
from eval_pipeline.results.metrics import metrics_path
from eval_pipeline.service.location import run_here
from eval_pipeline.service.partitions import EXPORT, MODEL, TASK
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake

RUN_TAG = "eval_pipeline/run_id"
QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # in-process: warnings up


@dataclass(frozen=True)
class BlockRun:
    """One Dagster run of an eval run: a model and a contiguous block of task keys."""

    run_id: str
    model_key: str
    task_keys: tuple[str, ...]  # contiguous in the task dimension's order
    attempt: int = 0  # a run queued again needs new run keys: the sensor skips keys it has seen

    @property
    def run_key(self) -> str:
        """The sensor's run key: eval run, attempt, model and first task."""
        return f"{self.run_id}:{self.attempt}:{self.model_key}:{self.task_keys[0]}"

    @property
    def tags(self) -> dict[str, str]:
        """The eval run tag and the Dagster partition (or partition range) tags."""
        tags = {RUN_TAG: self.run_id}
        first, last = f"{self.model_key}|{self.task_keys[0]}", f"{self.model_key}|{self.task_keys[-1]}"
        if first == last:
            tags["dagster/partition"] = first
        else:
            tags["dagster/asset_partition_range_start"] = first
            tags["dagster/asset_partition_range_end"] = last
        return tags


def origin_of(dagster_run: dg.DagsterRun) -> str:
    """How an eval run started from Dagster itself (a UI backfill, no eval run tag) is recorded."""
    return "dagster:" + (dagster_run.tags.get("dagster/backfill") or dagster_run.run_id)


def eval_run_of(catalog: Catalog, dagster_run: dg.DagsterRun) -> str | None:
    """The eval run a Dagster run works for: its tag, else the run recorded for its origin (a backfill)."""
    return dagster_run.tags.get(RUN_TAG) or runs.run_for_origin(catalog, origin_of(dagster_run))


def contiguous_blocks(wanted: list[str], order: list[str]) -> list[tuple[str, ...]]:
    """Split `wanted` task keys into runs of neighbours in `order` (a Dagster range covers every key
    between its ends, so a block must not straddle a key that is not wanted)."""
    wanted_set, blocks, current = set(wanted), [], []
    for key in order:
        if key in wanted_set:
            current.append(key)
        elif current:
            blocks.append(tuple(current))
            current = []
    if current:
        blocks.append(tuple(current))
    return blocks


def plan_block_runs(catalog: Catalog, run_id: str, task_order: Sequence[str], lake: Lake | None = None
                    ) -> tuple[list[BlockRun], set[str], set[str]]:
    """The Dagster runs an eval run's unfinished partitions need, plus the model and task keys that
    must exist as dynamic partitions first. Keys not yet in `task_order` are appended in run order.
    With the `lake`, a partition marked done whose metrics were never written (a crash between its
    generations and its metrics, in the same Dagster run) counts as unfinished too: its chunks are kept
    and skipped, its grades and metrics made."""
    parts = [p for p in runs.run_partitions(catalog, run_id)
             if p.status != "done" or (lake is not None and not finished(lake, p))]
    attempt = runs.run_attempt(catalog, run_id)
    model_keys = list(dict.fromkeys(p.model_key for p in parts))
    order = list(task_order) + [k for k in dict.fromkeys(p.task_key for p in parts) if k not in task_order]
    block_runs = []
    for mk in model_keys:
        wanted = [p.task_key for p in parts if p.model_key == mk]
        block_runs += [BlockRun(run_id, mk, block, attempt) for block in contiguous_blocks(wanted, order)]
    return block_runs, set(model_keys), {p.task_key for p in parts}


def finished(lake: Lake, part: t.RunPartition) -> bool:
    """Whether a run partition (a RunPartition row) is done with its metrics written: `done` alone means
    its generations are, and a crash before the same Dagster run's metrics step leaves it so."""
    return bool(part.status == "done" and lake.exists(metrics_path(part.run_id, part.model_key, part.task_key)))


def ensure_partitions(instance: dg.DagsterInstance, model_keys: set[str], task_keys: set[str]) -> None:
    """Add the model and task keys missing from their dynamic partitions."""
    for name, keys in ((MODEL, model_keys), (TASK, task_keys)):
        missing = [k for k in sorted(keys) if not instance.has_dynamic_partition(name, k)]
        if missing:
            instance.add_dynamic_partitions(name, missing)


def execute_in_process(instance: dg.DagsterInstance, catalog: Catalog, lake: Lake, run_id: str,
                       job: dg.JobDefinition, run_config: dict[str, Any] | None = None,
                       tags: dict[str, str] | None = None) -> list[ExecutionResult]:
    """Run an eval run's Dagster runs here and now, one after the other, in this process (no daemon
    needed; they are recorded in the instance under the workspace's code location, like the daemon's).
    `tags` are added to each (a backfill's id)."""
    task_order = instance.get_dynamic_partitions(TASK)
    block_runs, model_keys, task_keys = plan_block_runs(catalog, run_id, task_order, lake)
    ensure_partitions(instance, model_keys, task_keys)
    runs.mark_started(catalog, run_id)
    results = []
    for br in block_runs:
        if not runs.still_wanted(catalog, run_id):
            break
        result = run_here(instance, job, tags={**(tags or {}), **br.tags}, run_config=run_config)
        results.append(result)
        after_dagster_run(catalog, lake, run_id, result.success,
                          failure_message(result) if not result.success else "", dagster_run_id=result.run_id)
    runs.settle_cancel(catalog, run_id)
    return results


def after_dagster_run(catalog: Catalog, lake: Lake, run_id: str, success: bool, message: str = "", *,
                      dagster_run_id: str | None = None) -> None:
    """What a finished Dagster run means for its eval run (the status sensors and --wait both call it)."""
    if success:
        complete_if_done(catalog, lake, run_id, dagster_run_id=dagster_run_id)
        return
    runs.fail_run(catalog, run_id, "dagster_run_failed", message or "a Dagster run of this eval run failed")
    if dagster_run_id:
        runs.release_partitions(catalog, run_id, dagster_run_id)


def failure_message(result: ExecutionResult) -> str:
    """What made an in-process Dagster run fail: the failed step's message or the blocking check."""
    for event in result.all_events:
        if event.is_step_failure:
            return event.message or "step failed"
        data = event.event_specific_data
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and isinstance(data, dg.AssetCheckEvaluation) \
                and not data.passed:
            return f"blocking check {data.check_name} failed"
    return "Dagster run failed"


def stop_dagster_runs(instance: dg.DagsterInstance, run_id: str) -> int:
    """Cancel the eval run's Dagster runs that have not finished: queued ones never start, started
    ones are terminated through the run launcher (in-process ones stop at their next chunk); a Dagster
    backfill launching them (the daemon's) is cancelled too, so it launches no more."""
    for backfill in instance.get_backfills(filters=BulkActionsFilter(
            tags={RUN_TAG: run_id}, statuses=[BulkActionStatus.REQUESTED])):
        instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))  # type: ignore[no-untyped-call]
    stopped = 0
    records = instance.get_run_records(dg.RunsFilter(tags={RUN_TAG: run_id}, statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED]))
    for rec in records:
        run = rec.dagster_run
        if run.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
            instance.report_run_canceled(run)
            stopped += 1
        elif instance.run_launcher.terminate(run.run_id):
            stopped += 1
    return stopped


def execute_export(instance: dg.DagsterInstance, catalog: Catalog, export_id: str, job: dg.JobDefinition,
                   run_config: dict[str, Any] | None = None) -> bool:
    """Materialise an export task's partition here (the CLI without a daemon); True when it succeeded."""
    instance.add_dynamic_partitions(EXPORT, [export_id])
    result = run_here(instance, job, tags={"dagster/partition": export_id}, run_config=run_config)
    return bool(result.success)
