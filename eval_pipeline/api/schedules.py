"""MKA1's seven schedule operations (`/api/v1/llm/evals/schedules`), as the `meetkai-mka1` SDK models
them: `eval.schedule` objects, `eval.schedule.deleted`, and list pages; the schedule's runs are `eval.run`
objects. Schedules belong to the caller's org."""
from __future__ import annotations

from fastapi import APIRouter, Query, Request

from eval_pipeline import service
from eval_pipeline.api.common import Caller, json_body, page
from eval_pipeline.api.mka1 import MAX_INT32, RunStatus
from eval_pipeline.errors import InvalidInput
from eval_pipeline.service import Principal

router = APIRouter(prefix="/api/v1/llm/evals/schedules", tags=["schedules"])


def _self_addresses(request: Request) -> tuple[set[str], int | None]:
    """The host names and port this server answers on, so a webhook cannot point back at it."""
    hosts = {request.url.hostname or ""}
    server = request.scope.get("server")
    if server:
        hosts.add(server[0])
    return {h.lower() for h in hosts if h}, (server[1] if server else request.url.port)


@router.post("")
async def create_schedule(request: Request, caller: Principal = Caller) -> dict:
    """Create a schedule: `cron` (5 fields, wall-clock in `timezone`) or `interval_seconds` (at least 60),
    the `run` template validated as a run request, an optional signed webhook."""
    return service.create_schedule(request.app.state.runtime, await json_body(request), org_id=caller.org_id,
                                   team_id=caller.team_id, created_by=caller.user,
                                   self_addresses=_self_addresses(request))


@router.get("")
def list_schedules(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100),
                   suite_id: str | None = None, enabled: str | None = None, caller: Principal = Caller) -> dict:
    if enabled is not None and enabled.lower() not in ("true", "false"):
        raise InvalidInput("enabled", "must be true or false")
    items = service.list_schedules(request.app.state.runtime, org_id=caller.org_id, after=after, limit=limit + 1,
                                   suite_id=suite_id, enabled=None if enabled is None else enabled.lower() == "true")
    return page(items, limit)


@router.get("/{schedule_id}")
def get_schedule(request: Request, schedule_id: str, caller: Principal = Caller) -> dict:
    return service.get_schedule(request.app.state.runtime, schedule_id, org_id=caller.org_id)


@router.patch("/{schedule_id}")
async def update_schedule(request: Request, schedule_id: str, caller: Principal = Caller) -> dict:
    """Change a schedule: absent fields stay; `null` clears description, suite_version, cron,
    interval_seconds, webhook_url and webhook_secret. Giving cron clears interval_seconds and back."""
    return service.update_schedule(request.app.state.runtime, schedule_id, await json_body(request),
                                   org_id=caller.org_id, self_addresses=_self_addresses(request))


@router.delete("/{schedule_id}")
def delete_schedule(request: Request, schedule_id: str, caller: Principal = Caller) -> dict:
    return service.delete_schedule(request.app.state.runtime, schedule_id, org_id=caller.org_id)


@router.post("/{schedule_id}/trigger")
def trigger_schedule(request: Request, schedule_id: str, caller: Principal = Caller) -> dict:
    """Run the schedule now under its overlap policy; `trigger` says what the tick did."""
    return service.trigger_schedule(request.app.state.runtime, schedule_id, org_id=caller.org_id)


@router.get("/{schedule_id}/runs")
def list_schedule_runs(request: Request, schedule_id: str, after: str | None = None,
                       limit: int = Query(20, ge=1, le=100), suite_id: str | None = None,
                       suite_version: int | None = Query(None, ge=1, le=MAX_INT32), status: RunStatus | None = None,
                       caller: Principal = Caller) -> dict:
    items = service.schedule_runs(request.app.state.runtime, schedule_id, org_id=caller.org_id, after=after,
                                  limit=limit + 1, suite_id=suite_id, suite_version=suite_version, status=status)
    return page(items, limit)
