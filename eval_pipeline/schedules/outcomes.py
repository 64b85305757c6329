"""What a scheduled run's end means, worked out once when it is terminal: a completed run is compared with
the schedule's previous completed run and the imported baseline (regressions.compare_run); the regressions
go into the run (its metadata says how many, its report lists them) and, with a webhook, the schedule's
events are queued: `eval.run.completed` or `eval.run.failed`, and `eval.run.regression` when there are
regressions. One RunOutcome row per (run, attempt, terminal status) makes this happen once, whoever
evaluates; a run retried or rerun is settled again when it ends again."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError

from eval_pipeline import ids
from eval_pipeline.results.report import write_report
from eval_pipeline.runs.records import TERMINAL
from eval_pipeline.schedules.regressions import compare_run
from eval_pipeline.schedules.request import DEFAULT_ALPHA, DEFAULT_MIN_DROP
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.lake import Lake

SCHEDULED = or_(t.Run.origin.like("schedule:%"), t.Run.origin.like("nightly:%"))


def metrics_summary(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """model -> task -> "metric,filter" -> {value, stderr, ci_low, ci_high, n} of a run's metrics object."""
    return {m: {task: {k: {f: v.get(f) for f in ("value", "stderr", "ci_low", "ci_high", "n")}
                       for k, v in by_key.items() if "," in k}
                for task, by_key in tasks.items()}
            for m, tasks in (metrics or {}).items()}


def _event(delivery_id: str, event_type: str, sched: t.Schedule, run: t.Run,
           regressions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": delivery_id, "object": "eval.schedule.event", "type": event_type, "created_at": now(),
            "schedule": {"id": sched.id, "name": sched.name},
            "run": {"id": run.id, "status": run.status, "suite_id": run.suite_id, "suite_version": run.suite_version,
                    "models": run.models, "error": run.error, "created_at": run.created_at,
                    "completed_at": run.completed_at, "failed_at": run.failed_at},
            "metrics": metrics_summary(run.metrics), "regressions": regressions}


def unsettled_runs(catalog: Catalog, limit: int = 20) -> list[str]:
    """Terminal runs a schedule made whose outcome is not recorded for their current attempt and status,
    oldest first."""
    with catalog.session() as s:
        return list(s.scalars(
            select(t.Run.id).outerjoin(t.RunOutcome, and_(t.RunOutcome.run_id == t.Run.id,
                                                         t.RunOutcome.attempt == t.Run.attempt,
                                                         t.RunOutcome.status == t.Run.status))
            .where(and_(SCHEDULED, t.Run.status.in_(TERMINAL), t.RunOutcome.run_id.is_(None)))
            .order_by(t.Run.created_ns).limit(limit)))


def regression_settings(catalog: Catalog, run_id: str) -> tuple[float, float] | None:
    """(alpha, min_drop) for a run a schedule made (its schedule's, or the defaults for a nightly entry's
    or a deleted schedule's); None for a run no schedule made."""
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        if run is None or not run.origin.startswith(("schedule:", "nightly:")):
            return None
        sched = s.get(t.Schedule, run.origin.split(":", 1)[1]) if run.origin.startswith("schedule:") else None
        settings = (sched.regression if sched is not None else None) or {}
        return settings.get("alpha", DEFAULT_ALPHA), settings.get("min_drop", DEFAULT_MIN_DROP)


def settle_run(catalog: Catalog, lake: Lake, run_id: str) -> dict[str, Any] | None:
    """Record a terminal scheduled run's outcome for its current attempt and status (see the module); None
    when it is not terminal or was settled already. A comparison that fails (a lake read error) is
    recorded as the outcome's `error`, with the run's events still sent. Returns {run_id, status,
    previous_run_id, comparisons, regressions, error, events}."""
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        if run is None or run.status not in TERMINAL:
            return None
        if s.get(t.RunOutcome, (run_id, run.attempt, run.status)) is not None:
            return None
        origin, status, attempt = run.origin, run.status, run.attempt
    alpha, min_drop = regression_settings(catalog, run_id) or (DEFAULT_ALPHA, DEFAULT_MIN_DROP)
    previous: str | None = None
    comparisons: list[dict[str, Any]] = []
    error: str | None = None
    if status == "completed":
        try:
            previous, comparisons = compare_run(catalog, lake, run_id, alpha=alpha, min_drop=min_drop)
        except Exception as e:  # noqa: BLE001  (one run's comparison must not stop every later run's outcome)
            error = f"the comparison failed: {type(e).__name__}: {e}"
    regressions = [c for c in comparisons if c["regression"]]
    events: list[str] = []
    try:
        with catalog.session() as s:
            run = s.get(t.Run, run_id)
            sched = s.get(t.Schedule, origin.split(":", 1)[1]) if origin.startswith("schedule:") else None
            if run is None or (run.attempt, run.status) != (attempt, status):
                return None  # deleted, or queued again, meanwhile
            s.add(t.RunOutcome(run_id=run_id, attempt=attempt, status=status, schedule_key=origin,
                               previous_run_id=previous, comparisons=len(comparisons), regressions=regressions,
                               error=error, created_at=now(), created_ns=time.time_ns()))
            if status == "completed":
                run.metadata_ = {**(run.metadata_ or {}), "regressions": str(len(regressions))}
            if sched is not None and sched.webhook_url is not None:
                events = ({"completed": ["eval.run.completed"], "failed": ["eval.run.failed"]}.get(status, [])
                          + (["eval.run.regression"] if regressions else []))
                for event_type in events:
                    delivery_id = ids.new_id("webhook_delivery")
                    s.add(t.WebhookDelivery(id=delivery_id, schedule_id=sched.id, run_id=run_id, run_attempt=attempt,
                                            event_type=event_type, status="pending", attempts=[],
                                            payload=_event(delivery_id, event_type, sched, run, regressions),
                                            next_attempt_at=now(), created_at=now()))
    except IntegrityError:  # settled meanwhile by another evaluator
        return None
    if comparisons:
        try:
            write_report(catalog, lake, run_id, comparisons)
        except Exception as e:  # noqa: BLE001  (the report of record stays the one written at completion)
            error = f"the report could not be rewritten: {type(e).__name__}: {e}"
    return {"run_id": run_id, "status": status, "previous_run_id": previous, "comparisons": len(comparisons),
            "regressions": regressions, "error": error, "events": events}


def settle_runs(catalog: Catalog, lake: Lake, limit: int = 20) -> list[dict[str, Any]]:
    """settle_run for each unsettled scheduled run (at most `limit`); what each settled."""
    return [r for run_id in unsettled_runs(catalog, limit) if (r := settle_run(catalog, lake, run_id)) is not None]


def run_outcome(catalog: Catalog, run_id: str) -> dict[str, Any] | None:
    """A scheduled run's latest recorded outcome {schedule_key, attempt, status, previous_run_id, comparisons,
    regressions, error}, None before it is settled (or for a run no schedule made)."""
    with catalog.session() as s:
        row = s.scalar(select(t.RunOutcome).where(t.RunOutcome.run_id == run_id)
                       .order_by(t.RunOutcome.created_ns.desc()).limit(1))
        if row is None:
            return None
        return {"schedule_key": row.schedule_key, "attempt": row.attempt, "status": row.status,
                "previous_run_id": row.previous_run_id, "comparisons": row.comparisons,
                "regressions": row.regressions, "error": row.error}
