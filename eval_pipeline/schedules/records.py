"""Schedules in the catalog: create, read, list, update, delete, and the runs a schedule made, as MKA1's
`eval.schedule` objects. Every write validates the whole schedule first (its run template as the run
request a tick would make), so nothing is half-written."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from eval_pipeline import ids
from eval_pipeline.errors import InvalidInput, NotFound
from eval_pipeline.runs.creation import check_run_request
from eval_pipeline.runs.records import RunObject, list_runs
from eval_pipeline.schedules.request import ScheduleFields, apply_update, parse_schedule
from eval_pipeline.schedules.timing import Cadence, CronIterator, next_tick
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.secrets import encrypt_secret

# (cron) -> whether Dagster accepts it as a schedule's cron (the service passes Dagster's own check)
CronCheck = Callable[[str], bool]
# (webhook URL) -> whether it points at this server itself (the API knows its own address)
SelfCheck = Callable[[str], bool]


def origin_of_schedule(schedule_id: str) -> str:
    """The `origin` of the eval runs a schedule makes."""
    return f"schedule:{schedule_id}"


def cadence_of(row: t.Schedule) -> Cadence:
    """The row's cron or interval, with its time zone."""
    return Cadence(row.cron, row.interval_seconds, row.timezone)


def schedule_row(s: Session, schedule_id: str, org_id: str | None = None) -> t.Schedule:
    """The schedule, or NotFound (also for another org's when `org_id` is given)."""
    row = s.get(t.Schedule, schedule_id)
    if row is None or (org_id is not None and row.org_id != org_id):
        raise NotFound("schedule", schedule_id)
    return row


def schedule_object(s: Session, row: t.Schedule) -> dict[str, Any]:
    """MKA1's `eval.schedule` of `row` (times in Unix seconds; the webhook secret only as
    `webhook_configured`), with this product's `regression` settings."""
    last = s.scalar(select(t.Run).where(t.Run.origin == origin_of_schedule(row.id))
                    .order_by(t.Run.created_ns.desc()).limit(1))
    return {
        "id": row.id, "object": "eval.schedule", "name": row.name, "description": row.description,
        "suite_id": row.suite_id, "suite_version": row.suite_version, "cron": row.cron,
        "interval_seconds": row.interval_seconds, "timezone": row.timezone, "overlap_policy": row.overlap_policy,
        "enabled": row.enabled, "webhook_url": row.webhook_url,
        "webhook_configured": row.webhook_secret_encrypted is not None, "run": row.run,
        "metadata": row.metadata_ or {}, "regression": row.regression,
        "last_run_id": last.id if last else None, "last_run_at": last.created_at if last else None,
        "last_run_status": last.status if last else None, "next_run_at": row.next_run_at,
        "created_at": row.created_at, "updated_at": row.updated_at,
    }


def _validate(catalog: Catalog, fields: ScheduleFields, org_id: str, cron_ok: CronCheck,
              points_at_self: SelfCheck | None, *, check_disabled: bool = True) -> None:
    if fields.cron is not None and not cron_ok(fields.cron):
        raise InvalidInput("cron", f"{fields.cron!r} is not a valid 5-field cron expression")
    if fields.webhook_url is not None and points_at_self is not None and points_at_self(fields.webhook_url):
        raise InvalidInput("webhook_url", "points at this server itself")
    req = fields.run_request()
    if not fields.enabled and not check_disabled:
        return  # a disabled schedule may hold a run that cannot be made now (a model removed): fix it later
    try:
        check_run_request(catalog, req, org_id=org_id)
    except InvalidInput as e:
        raise (e if e.field.startswith(("suite_id", "suite_version")) else
               InvalidInput(f"run.{e.field}", e.message)) from None


def create_schedule(catalog: Catalog, home: Path, body: object, *, org_id: str, team_id: str,
                    created_by: str | None, cron_ok: CronCheck, cron_times: CronIterator,
                    points_at_self: SelfCheck | None = None) -> dict[str, Any]:
    """Validate and store a schedule of org `org_id` (MKA1's CreateEvalScheduleRequest); its first tick is
    the next one after now. Returns the `eval.schedule`. Raises InvalidInput naming the field, NotFound for
    a suite that is not the org's."""
    fields = parse_schedule(body)
    _validate(catalog, fields, org_id, cron_ok, points_at_self)
    stamp = now()
    cadence = Cadence(fields.cron, fields.interval_seconds, fields.timezone)
    with catalog.session() as s:
        row = t.Schedule(
            id=ids.new_id("schedule"), org_id=org_id, team_id=team_id, created_by=created_by, name=fields.name,
            description=fields.description, suite_id=fields.suite_id, suite_version=fields.suite_version,
            cron=fields.cron, interval_seconds=fields.interval_seconds, timezone=fields.timezone,
            overlap_policy=fields.overlap_policy, enabled=fields.enabled, webhook_url=fields.webhook_url,
            webhook_secret_encrypted=encrypt_secret(home, fields.webhook_secret) if fields.webhook_secret else None,
            run=fields.run, regression=fields.regression.model_dump(), metadata_=fields.metadata,
            next_run_at=next_tick(cadence, time.time(), cron_times) if fields.enabled else None,
            created_at=stamp, created_ns=time.time_ns(), updated_at=stamp)
        s.add(row)
        s.flush()
        return schedule_object(s, row)


def get_schedule(catalog: Catalog, schedule_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """The `eval.schedule`. Raises NotFound (also for another org's)."""
    with catalog.session() as s:
        return schedule_object(s, schedule_row(s, schedule_id, org_id))


def list_schedules(catalog: Catalog, *, org_id: str | None = None, after: str | None = None, limit: int = 20,
                   suite_id: str | None = None, enabled: bool | None = None) -> list[dict[str, Any]]:
    """Up to `limit` schedules of `org_id`, newest first, after the schedule `after` (a cursor), of one
    suite or only enabled / disabled ones when asked. Raises NotFound when `after` is not a schedule."""
    with catalog.session() as s:
        q = select(t.Schedule).order_by(t.Schedule.created_ns.desc(), t.Schedule.id.desc())
        if org_id is not None:
            q = q.where(t.Schedule.org_id == org_id)
        if suite_id is not None:
            q = q.where(t.Schedule.suite_id == suite_id)
        if enabled is not None:
            q = q.where(t.Schedule.enabled.is_(enabled))
        if after:
            anchor = schedule_row(s, after, org_id)
            q = q.where((t.Schedule.created_ns < anchor.created_ns)
                        | ((t.Schedule.created_ns == anchor.created_ns) & (t.Schedule.id < anchor.id)))
        return [schedule_object(s, row) for row in s.scalars(q.limit(limit))]


def _fields_of(row: t.Schedule) -> dict[str, Any]:
    return {"name": row.name, "suite_id": row.suite_id, "run": row.run, "description": row.description,
            "suite_version": row.suite_version, "cron": row.cron, "interval_seconds": row.interval_seconds,
            "timezone": row.timezone, "overlap_policy": row.overlap_policy, "enabled": row.enabled,
            "webhook_url": row.webhook_url, "webhook_secret": None, "metadata": row.metadata_ or {},
            "regression": row.regression}


def update_schedule(catalog: Catalog, home: Path, schedule_id: str, changes: object, *, org_id: str | None,
                    cron_ok: CronCheck, cron_times: CronIterator,
                    points_at_self: SelfCheck | None = None) -> dict[str, Any]:
    """PATCH a schedule (MKA1's UpdateEvalScheduleRequest; see request.apply_update). A new cadence, time
    zone or re-enabling sets the next tick to the first after now; disabling clears it. Returns the
    `eval.schedule`. Raises NotFound, or InvalidInput naming the field (nothing changes then)."""
    with catalog.session() as s:
        row = schedule_row(s, schedule_id, org_id)
        current, has_secret, org = _fields_of(row), row.webhook_secret_encrypted is not None, row.org_id
    fields = apply_update(current, changes)
    assert isinstance(changes, dict)  # apply_update raised otherwise
    keeps_secret = has_secret and "webhook_secret" not in changes
    if fields.webhook_url is not None and fields.webhook_secret is None and not keeps_secret:
        raise InvalidInput("webhook_secret", "webhook_url and webhook_secret go together: events are signed")
    if fields.webhook_url is None and fields.webhook_secret is not None:
        raise InvalidInput("webhook_url", "webhook_url and webhook_secret go together: events are signed")
    # a disabled schedule's run is checked again when it is enabled (so a broken one can be switched off)
    _validate(catalog, fields, org, cron_ok, points_at_self, check_disabled=False)
    with catalog.session() as s:
        row = schedule_row(s, schedule_id, org_id)
        cadence_changed = (row.cron, row.interval_seconds, row.timezone) != (
            fields.cron, fields.interval_seconds, fields.timezone)
        if not fields.enabled:
            row.next_run_at = None
        elif cadence_changed or not row.enabled or row.next_run_at is None:
            row.next_run_at = next_tick(Cadence(fields.cron, fields.interval_seconds, fields.timezone),
                                        time.time(), cron_times)
        for name in ("name", "description", "suite_version", "cron", "interval_seconds", "timezone",
                     "overlap_policy", "enabled", "webhook_url", "run"):
            setattr(row, name, getattr(fields, name))
        row.metadata_ = fields.metadata
        row.regression = fields.regression.model_dump()
        if fields.webhook_url is None:
            row.webhook_secret_encrypted = None
        elif fields.webhook_secret is not None:
            row.webhook_secret_encrypted = encrypt_secret(home, fields.webhook_secret)
        row.updated_at = now()
        return schedule_object(s, row)


def delete_schedule(catalog: Catalog, schedule_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """Delete a schedule with its ticks and webhook deliveries (the runs it made stay). Returns
    `eval.schedule.deleted`. Raises NotFound."""
    with catalog.session() as s:
        s.delete(schedule_row(s, schedule_id, org_id))
    return {"id": schedule_id, "object": "eval.schedule.deleted", "deleted": True}


def schedule_runs(catalog: Catalog, schedule_id: str, *, org_id: str | None = None, after: str | None = None,
                  limit: int = 20, suite_id: str | None = None, suite_version: int | None = None,
                  status: str | None = None) -> list[RunObject]:
    """The runs the schedule made, newest first, filtered as list_runs filters. Raises NotFound for an
    unknown schedule or an `after` that is not a run."""
    get_schedule(catalog, schedule_id, org_id=org_id)
    return list_runs(catalog, status=status, suite_id=suite_id, limit=limit, after=after, org_id=org_id,
                     suite_version=suite_version, origin=origin_of_schedule(schedule_id))
