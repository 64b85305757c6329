"""Ticks: what a due schedule does. Each tick is claimed with a row unique per (schedule, kind, tick
time) in the same transaction that moves the schedule's next tick on, and its run is created with an
idempotency key made from the tick, so a tick makes at most one run whatever happens: two evaluators at
once, an evaluator restarted mid-tick (a tick left `claimed` is finished by the next evaluation), the same
tick evaluated twice. Ticks missed while nothing evaluated make one run, for the latest of them, as
Dagster's own schedules do.

Overlap policies, when a tick comes while a run of the schedule is still working: `skip` records the
tick as skipped; `buffer_one` keeps it (replacing an older kept tick) and starts it once no run of the
schedule works; `allow_all` starts it anyway."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from eval_pipeline import ids
from eval_pipeline.errors import EvalPipelineError, NotFound
from eval_pipeline.runs.creation import create_run
from eval_pipeline.runs.records import TERMINAL
from eval_pipeline.schedules.records import cadence_of, origin_of_schedule, schedule_object, schedule_row
from eval_pipeline.schedules.timing import CronIterator, latest_tick, next_tick
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.lake import Lake

STALE_CLAIM = 300  # seconds: a tick claimed longer ago than this was left by an evaluator that died


@dataclass(frozen=True)
class TickResult:
    """What one tick did: status created | skipped | buffered | failed, the run it made, or why not."""

    schedule_id: str
    kind: str  # tick | trigger
    tick_at: int
    status: str
    run_id: str | None = None
    reason: str | None = None


def tick_key(schedule_id: str, kind: str, tick_at: int) -> str:
    """The idempotency key of the run a tick makes (unique per org, so one run per tick)."""
    return f"schedule:{schedule_id}:{kind}:{tick_at}"


def _claim(catalog: Catalog, schedule_id: str, at: float, cron_times: CronIterator) -> str | None:
    """Claim the schedule's latest due tick and move its next tick past `at`, in one transaction; the
    tick's id, or None when it is not due or another evaluator took it."""
    with catalog.session() as s:
        row = s.get(t.Schedule, schedule_id)
        if row is None or not row.enabled or row.next_run_at is None or row.next_run_at > at:
            return None
        cadence, due = cadence_of(row), row.next_run_at
        tick_at, following = max(latest_tick(cadence, at, cron_times), due), next_tick(cadence, at, cron_times)
    try:
        with catalog.session() as s:
            moved = s.execute(update(t.Schedule).where(t.Schedule.id == schedule_id, t.Schedule.next_run_at == due)
                              .values(next_run_at=following))
            if moved.rowcount != 1:  # type: ignore[attr-defined]  # (CursorResult) another evaluator moved it
                return None
            tick = t.ScheduleTick(id=ids.new_id("schedule_tick"), schedule_id=schedule_id, kind="tick",
                                  tick_at=tick_at, status="claimed", created_at=now(), updated_at=now())
            s.add(tick)
            s.flush()
            return tick.id
    except IntegrityError:
        # The tick is claimed already (another evaluator, or next_run_at set behind it by a PATCH on a host
        # whose clock lags): whoever claimed it carries it out; move past it, or the schedule never ticks again.
        with catalog.session() as s:
            s.execute(update(t.Schedule).where(t.Schedule.id == schedule_id, t.Schedule.next_run_at == due)
                      .values(next_run_at=following))
        return None


def _working_run(catalog: Catalog, schedule_id: str, but: str) -> str | None:
    """A run of the schedule still working, other than the one made under idempotency key `but`."""
    with catalog.session() as s:
        return s.scalar(select(t.Run.id).where(t.Run.origin == origin_of_schedule(schedule_id),
                                               t.Run.status.not_in(TERMINAL),
                                               (t.Run.idempotency_key != but) | t.Run.idempotency_key.is_(None))
                        .limit(1))


def _set_status(catalog: Catalog, tick_id: str, status: str, *, from_: tuple[str, ...], run_id: str | None = None,
                reason: str | None = None) -> bool:
    with catalog.session() as s:
        done = s.execute(update(t.ScheduleTick).where(t.ScheduleTick.id == tick_id,
                                                      t.ScheduleTick.status.in_(from_))
                         .values(status=status, run_id=run_id, reason=reason, updated_at=now()))
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def fire(catalog: Catalog, lake: Lake, tick_id: str) -> TickResult:
    """Carry out a claimed or buffered tick under its schedule's overlap policy: create its run (once), or
    skip or buffer it. A run that cannot be made (its suite, a model, a task or its inputs gone) fails the
    tick with the reason; the schedule keeps ticking. A buffered tick of a schedule disabled since is
    skipped."""
    with catalog.session() as s:
        tick = s.get(t.ScheduleTick, tick_id)
        row = s.get(t.Schedule, tick.schedule_id) if tick is not None else None
        if tick is None or row is None:  # the schedule was deleted meanwhile (its ticks with it)
            return TickResult("", "tick", 0, status="gone", reason="the schedule was deleted")
        key = tick_key(row.id, tick.kind, tick.tick_at)
        org_id, team_id, created_by, policy = row.org_id, row.team_id, row.created_by, row.overlap_policy
        body: dict[str, Any] = {**row.run, "suite_id": row.suite_id, "suite_version": row.suite_version}
        # a night must ask the model again: an endpoint's weights can change under the same name
        body["generation"] = {"use_cache": False, **(body.get("generation") or {})}
        body["metadata"] = {**body.get("metadata", {}), "schedule_id": row.id,
                            "schedule_tick": f"{tick.kind}:{tick.tick_at}"}
        status, result_base, enabled = tick.status, (row.id, tick.kind, tick.tick_at), row.enabled
    if status not in ("claimed", "buffered"):
        return TickResult(*result_base, status=status)
    with catalog.session() as s:
        made = s.scalar(select(t.Run.id).where(t.Run.org_id == org_id, t.Run.idempotency_key == key))
    if made is None and status == "buffered" and not enabled:
        reason = "the schedule was disabled while this tick waited"
        _set_status(catalog, tick_id, "skipped", from_=("buffered",), reason=reason)
        return TickResult(*result_base, status="skipped", reason=reason)
    if made is None and policy != "allow_all":
        busy = _working_run(catalog, result_base[0], key)
        if busy is not None:
            reason = f"run {busy} of this schedule is still working"
            if policy == "skip":
                _set_status(catalog, tick_id, "skipped", from_=("claimed", "buffered"), reason=reason)
                return TickResult(*result_base, status="skipped", reason=reason)
            _buffer(catalog, tick_id, result_base[0], reason)
            return TickResult(*result_base, status="buffered", reason=reason)
    if made is None:
        try:
            made = create_run(catalog, lake, body, origin=origin_of_schedule(result_base[0]), org_id=org_id,
                              team_id=team_id, created_by=created_by, idempotency_key=key,
                              system_tags=[f"schedule:{result_base[0]}", f"tick:{result_base[1]}:{result_base[2]}"]
                              )["id"]
        except Exception as e:  # noqa: BLE001  (any failure fails this tick only; the reason is kept)
            reason = str(e) if isinstance(e, EvalPipelineError) else f"{type(e).__name__}: {e}"
            _set_status(catalog, tick_id, "failed", from_=("claimed", "buffered"), reason=reason)
            return TickResult(*result_base, status="failed", reason=reason)
    _set_status(catalog, tick_id, "created", from_=("claimed", "buffered", "skipped"), run_id=made)
    return TickResult(*result_base, status="created", run_id=made)


def _buffer(catalog: Catalog, tick_id: str, schedule_id: str, reason: str) -> None:
    """Keep this tick for later; an older kept tick of the schedule is skipped (buffer_one keeps one)."""
    with catalog.session() as s:
        s.execute(update(t.ScheduleTick).where(t.ScheduleTick.schedule_id == schedule_id,
                                               t.ScheduleTick.status == "buffered", t.ScheduleTick.id != tick_id)
                  .values(status="skipped", reason="replaced by a newer buffered tick", updated_at=now()))
        s.execute(update(t.ScheduleTick).where(t.ScheduleTick.id == tick_id,
                                               t.ScheduleTick.status.in_(("claimed", "buffered")))
                  .values(status="buffered", reason=reason, updated_at=now()))


def evaluate_schedules(catalog: Catalog, lake: Lake, at: float, cron_times: CronIterator, *,
                       budget: float = 40.0) -> list[TickResult]:
    """One evaluation at Unix time `at`: finish ticks left claimed by an evaluator that died, start
    buffered ticks whose schedule has no run working any more, then claim and carry out every due tick of
    an enabled schedule, oldest first, until `budget` seconds have passed (the rest stay due for the next
    evaluation: a Dagster sensor evaluation must end within its timeout). Returns what each tick did."""
    deadline = time.monotonic() + budget
    results: list[TickResult] = []
    with catalog.session() as s:
        stale = s.scalars(select(t.ScheduleTick.id).where(t.ScheduleTick.status == "claimed",
                                                          t.ScheduleTick.updated_at < at - STALE_CLAIM)).all()
        buffered = s.scalars(select(t.ScheduleTick.id).where(t.ScheduleTick.status == "buffered")
                             .order_by(t.ScheduleTick.tick_at)).all()
        due = s.scalars(select(t.Schedule.id).where(t.Schedule.enabled.is_(True), t.Schedule.next_run_at <= at)
                        .order_by(t.Schedule.next_run_at)).all()
    for tick_id in stale:
        results.append(fire(catalog, lake, tick_id))
    for tick_id in buffered:
        result = fire(catalog, lake, tick_id)
        if result.status != "buffered":  # a tick still waiting is not news
            results.append(result)
    for schedule_id in due:
        if time.monotonic() > deadline:
            break
        claimed = _claim(catalog, schedule_id, at, cron_times)
        if claimed is not None:
            results.append(fire(catalog, lake, claimed))
    return results


def trigger_schedule(catalog: Catalog, lake: Lake, schedule_id: str, *, org_id: str | None = None,
                     at: float | None = None) -> tuple[dict[str, Any], TickResult]:
    """Run the schedule now (also when disabled), under its overlap policy: a tick of kind `trigger` at
    the current second (two triggers in one second are one tick). Returns the `eval.schedule` after it and
    what the tick did. Raises NotFound."""
    tick_at = int(time.time() if at is None else at)
    with catalog.session() as s:
        schedule_row(s, schedule_id, org_id)
    try:
        with catalog.session() as s:
            tick = t.ScheduleTick(id=ids.new_id("schedule_tick"), schedule_id=schedule_id, kind="trigger",
                                  tick_at=tick_at, status="claimed", created_at=now(), updated_at=now())
            s.add(tick)
            s.flush()
            tick_id = tick.id
    except IntegrityError:  # a trigger in the same second (one tick), or the schedule deleted meanwhile
        with catalog.session() as s:
            found = s.scalar(select(t.ScheduleTick.id).where(
                t.ScheduleTick.schedule_id == schedule_id, t.ScheduleTick.kind == "trigger",
                t.ScheduleTick.tick_at == tick_at))
        if found is None:
            raise NotFound("schedule", schedule_id) from None
        tick_id = found
    result = fire(catalog, lake, tick_id)
    with catalog.session() as s:
        return schedule_object(s, schedule_row(s, schedule_id)), result


def schedule_ticks(catalog: Catalog, schedule_id: str, *, org_id: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
    """The schedule's latest ticks, newest first: {id, kind, tick_at, status, run_id, reason, created_at,
    updated_at}. Raises NotFound."""
    with catalog.session() as s:
        schedule_row(s, schedule_id, org_id)
        rows = s.scalars(select(t.ScheduleTick).where(t.ScheduleTick.schedule_id == schedule_id)
                         .order_by(t.ScheduleTick.tick_at.desc(), t.ScheduleTick.created_at.desc()).limit(limit))
        return [{"id": r.id, "kind": r.kind, "tick_at": r.tick_at, "status": r.status, "run_id": r.run_id,
                 "reason": r.reason, "created_at": r.created_at, "updated_at": r.updated_at} for r in rows]

