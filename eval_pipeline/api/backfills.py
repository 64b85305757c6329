"""Backfills and stale cells over HTTP (this product's own routes, beside MKA1's evals API):
`POST /api/v1/llm/evals/backfills` and `GET /api/v1/llm/evals/stale`. Suites and runs belong to the
caller's org. A backfill made here is executed by the Dagster daemon; without one it is refused (409)."""
from __future__ import annotations

from fastapi import APIRouter, Request

from eval_pipeline import service
from eval_pipeline.api.common import Caller, json_body
from eval_pipeline.service import Principal

router = APIRouter(prefix="/api/v1/llm/evals", tags=["backfills"])


@router.post("/backfills", status_code=202)
async def create_backfill(request: Request, caller: Principal = Caller) -> dict:
    """Backfill a suite's (model, task) grid: {suite_id, suite_version?, models, revisions? (one Hub model's
    revisions, in training order; checkpoint folders only from the CLI), task_ids?, stale? (exactly the
    stale cells), run? (run settings)}. Returns a list of {backfill_id, run_id, suite_id, models, partitions,
    status}."""
    from eval_pipeline.orchestration.definitions import defs  # deferred: it loads every asset module

    made = service.create_backfill(request.app.state.runtime, await json_body(request), defs.resolve_asset_graph(),
                                   org_id=caller.org_id, team_id=caller.team_id, created_by=caller.user,
                                   folders=False)  # a caller must not reach the server's folders
    return {"object": "list", "data": made}


@router.get("/stale")
def list_stale(request: Request, suite_id: str | None = None, model: str | None = None,
               caller: Principal = Caller) -> dict:
    """The stale (model, task) cells of the caller's suites (or of one): each with its latest completed
    result and why it is stale (task_version, grading or model)."""
    cells = service.stale_cells(request.app.state.runtime, suite_id=suite_id, model=model, org_id=caller.org_id)
    return {"object": "list", "data": cells}
