"""Schedule actions (MKA1's seven schedule operations and the CLI's `schedules` commands), the tick and
outcome work the orchestration side does, and the nightly entries of the deployment file. Cron times follow
Dagster's own schedule rules (its cron iterator), so an API schedule and a `dg.ScheduleDefinition` with the
same cron and time zone tick at the same instants."""
from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string  # Dagster's own cron rules

from eval_pipeline.errors import EvalPipelineError, InvalidInput
from eval_pipeline.runs.creation import create_run
from eval_pipeline.runs.lifecycle import requeue
from eval_pipeline.runs.records import RunObject
from eval_pipeline.schedules import nightly, outcomes, records, ticks, webhooks
from eval_pipeline.schedules.nightly import NightlyEntry
from eval_pipeline.schedules.request import refers_to
from eval_pipeline.service.launching import BlockRun, ensure_partitions, plan_block_runs
from eval_pipeline.service.partitions import TASK
from eval_pipeline.stores.runtime import Runtime
from eval_pipeline.stores.settings import Settings


def cron_times(start: float, cron: str, timezone: str, ascending: bool) -> Iterator[datetime]:
    """Dagster's cron iterator: the cron's times from `start` on (or back from it), in `timezone`."""
    return cron_string_iterator(start, cron, timezone, ascending=ascending)


def cron_ok(cron: str) -> bool:
    """Whether Dagster accepts `cron` for a schedule and it ever ticks ("0 0 31 4 *" passes Dagster's
    syntax check but has no date)."""
    if not is_valid_cron_string(cron):
        return False
    try:
        next(cron_string_iterator(time.time(), cron, "UTC"))
    except Exception:  # croniter's CroniterBadDateError and kin: a cron with no date
        return False
    return True


def _self_check(self_addresses: tuple[set[str], int | None] | None) -> records.SelfCheck | None:
    if self_addresses is None:
        return None
    hosts, port = self_addresses
    return lambda url: refers_to(url, hosts, port)


def create_schedule(rt: Runtime, body: object, *, org_id: str, team_id: str, created_by: str | None = None,
                    self_addresses: tuple[set[str], int | None] | None = None) -> dict[str, Any]:
    """Create a schedule (MKA1's createEvalSchedule body) of `org_id`. `self_addresses` (host names and
    port the server answers on) refuses a webhook that points back at it. Returns the `eval.schedule`.
    Raises InvalidInput naming the field (`cron`, `run.models[1]`...), NotFound for the suite."""
    return records.create_schedule(rt.catalog, rt.settings.home, body, org_id=org_id, team_id=team_id,
                                   created_by=created_by, cron_ok=cron_ok, cron_times=cron_times,
                                   points_at_self=_self_check(self_addresses))


def get_schedule(rt: Runtime, schedule_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """The `eval.schedule`. Raises NotFound (also for another org's)."""
    return records.get_schedule(rt.catalog, schedule_id, org_id=org_id)


def list_schedules(rt: Runtime, *, org_id: str | None = None, after: str | None = None, limit: int = 20,
                   suite_id: str | None = None, enabled: bool | None = None) -> list[dict[str, Any]]:
    """Schedules of `org_id`, newest first, a page after the cursor `after`. Raises NotFound for `after`."""
    return records.list_schedules(rt.catalog, org_id=org_id, after=after, limit=limit, suite_id=suite_id,
                                  enabled=enabled)


def update_schedule(rt: Runtime, schedule_id: str, changes: object, *, org_id: str | None = None,
                    self_addresses: tuple[set[str], int | None] | None = None) -> dict[str, Any]:
    """PATCH a schedule (MKA1's updateEvalSchedule body). Returns the `eval.schedule`. Raises NotFound, or
    InvalidInput naming the field; nothing changes then."""
    return records.update_schedule(rt.catalog, rt.settings.home, schedule_id, changes, org_id=org_id,
                                   cron_ok=cron_ok, cron_times=cron_times,
                                   points_at_self=_self_check(self_addresses))


def delete_schedule(rt: Runtime, schedule_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """Delete a schedule (its runs stay). Returns `eval.schedule.deleted`. Raises NotFound."""
    return records.delete_schedule(rt.catalog, schedule_id, org_id=org_id)


def trigger_schedule(rt: Runtime, schedule_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """Run the schedule now under its overlap policy (the run is queued for the sensor or a worker).
    Returns the `eval.schedule` with `trigger`: what the tick did {status, run_id, reason}. Raises NotFound."""
    schedule, result = ticks.trigger_schedule(rt.catalog, rt.lake, schedule_id, org_id=org_id)
    return {**schedule, "trigger": {"status": result.status, "run_id": result.run_id, "reason": result.reason}}


def schedule_runs(rt: Runtime, schedule_id: str, **filters: Any) -> list[RunObject]:
    """The runs the schedule made, newest first (`filters`: org_id, after, limit, suite_id, suite_version,
    status). Raises NotFound."""
    return records.schedule_runs(rt.catalog, schedule_id, **filters)


def schedule_ticks(rt: Runtime, schedule_id: str, *, org_id: str | None = None) -> list[dict[str, Any]]:
    """The schedule's latest ticks and what each did. Raises NotFound."""
    return ticks.schedule_ticks(rt.catalog, schedule_id, org_id=org_id)


def webhook_deliveries(rt: Runtime, schedule_id: str, *, org_id: str | None = None) -> list[dict[str, Any]]:
    """The schedule's webhook events with every delivery attempt. Raises NotFound."""
    return webhooks.deliveries(rt.catalog, schedule_id, org_id=org_id)


def evaluate_schedules(rt: Runtime, *, at: float | None = None) -> list[ticks.TickResult]:
    """Carry out every due tick at `at` (default now): the `schedule_ticks` sensor's work."""
    return ticks.evaluate_schedules(rt.catalog, rt.lake, time.time() if at is None else at, cron_times)


def settle_scheduled_runs(rt: Runtime) -> list[dict[str, Any]]:
    """Record the outcome (comparisons, regressions, webhook events) of scheduled runs that ended."""
    return outcomes.settle_runs(rt.catalog, rt.lake)


def deliver_webhooks(rt: Runtime) -> list[dict[str, Any]]:
    """Send the webhook events that are due, one attempt each."""
    return webhooks.deliver_due(rt.catalog, rt.settings.home)


def run_outcome(rt: Runtime, run_id: str) -> dict[str, Any] | None:
    """A scheduled run's comparisons summary and regressions, once settled (else None)."""
    return outcomes.run_outcome(rt.catalog, run_id)


def nightly_file(settings: Settings) -> Path:
    """The deployment's nightly file: EVAL_PIPELINE_NIGHTLY, else <home>/nightly.yaml."""
    return Path(os.environ.get("EVAL_PIPELINE_NIGHTLY") or settings.home / "nightly.yaml")


def nightly_entries(path: Path) -> list[NightlyEntry]:
    """The entries of the nightly file at `path` ([] when there is none, unless EVAL_PIPELINE_NIGHTLY names
    it), each checked (cron by Dagster's rules). Raises InvalidInput naming the file and entry."""
    entries = nightly.load_nightly(path, required=os.environ.get("EVAL_PIPELINE_NIGHTLY") == str(path))
    for i, entry in enumerate(entries):
        if not cron_ok(entry.cron):
            raise InvalidInput(f"{path}: nightly[{i}].cron", f"{entry.cron!r} is not a valid 5-field cron")
    return entries


def start_nightly_tick(rt: Runtime, instance: dg.DagsterInstance, entry: NightlyEntry, tick_at: int
                       ) -> tuple[list[BlockRun], list[str]]:
    """One tick of a nightly entry: an eval run per suite (once per tick: its idempotency key is the tick),
    started at once, and the Dagster runs its partitions need (their dynamic partitions added). Returns
    (the Dagster runs to request, an error per suite that could not be run). A run whose Dagster runs
    cannot be planned goes back to the queue for `queued_runs`. Raises the first error when no suite ran."""
    block_runs: list[BlockRun] = []
    errors: list[EvalPipelineError] = []
    for suite in entry.suites:
        try:
            suite_id = nightly.resolve_suite(rt.catalog, entry.org, suite)
            request = entry.run_request(suite_id)
            request.metadata = {**request.metadata, "nightly": entry.name, "schedule_tick": f"tick:{tick_at}"}
            run = create_run(rt.catalog, rt.lake, request, origin=entry.origin(suite_id),
                             status="in_progress", org_id=entry.org,
                             idempotency_key=f"{entry.origin(suite_id)}:{tick_at}",
                             system_tags=[f"nightly:{entry.name}", f"tick:{tick_at}"])
        except EvalPipelineError as e:
            errors.append(e)
            continue
        try:
            planned, model_keys, task_keys = plan_block_runs(rt.catalog, run["id"],
                                                             instance.get_dynamic_partitions(TASK), rt.lake)
            ensure_partitions(instance, model_keys, task_keys)
        except Exception:
            requeue(rt.catalog, run["id"])  # in_progress with nothing launched would wait forever
            raise
        block_runs += planned
    if errors and not block_runs:
        raise errors[0]
    return block_runs, [f"{suite}: {e}" for suite, e in zip(entry.suites, errors)]
