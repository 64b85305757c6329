"""ZStack's model-evaluation task operations (`/zstack/v1/model-evaluation-tasks`): a task is an eval
run. `Authorization: OAuth <API key>`; answers `{"success", "error", "inventory"}` (`inventories` for
the list), errors with `success: false` and a 4xx status."""
from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from eval_pipeline import service
from eval_pipeline.api.common import json_body
from eval_pipeline.errors import Conflict, EvalPipelineError, InvalidInput, NotFound
from eval_pipeline.service import Principal

router = APIRouter(prefix="/zstack/v1/model-evaluation-tasks", tags=["zstack"])


class _Unauthorized(EvalPipelineError):
    code = "ID.1001"


def _caller(request: Request) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    caller = service.authenticate(request.app.state.runtime, token.strip() if scheme == "OAuth" else None)
    if caller is None:
        raise _Unauthorized("Authorization: OAuth <API key> is required")
    return caller


def _answer(fn):
    """Run a handler, wrapping its result or error in ZStack's envelope."""
    try:
        return JSONResponse({"success": True, "error": None, **fn()})
    except EvalPipelineError as e:
        return _error(e)


def _error(e: EvalPipelineError) -> JSONResponse:
    status = 401 if isinstance(e, _Unauthorized) else 404 if isinstance(e, NotFound) else \
        409 if isinstance(e, Conflict) else 400 if isinstance(e, InvalidInput) else 500
    return JSONResponse({"success": False, "inventory": None, "error": {
        "code": e.code, "description": type(e).__name__, "details": str(e)}}, status_code=status)


def _time(ts: int | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


def inventory(rt, run: dict) -> dict:
    """The brief's inventory fields, filled from the run and its first model's registry entry."""
    counts, gen, settings = run["request_counts"], run["generation"] or {}, run.get("settings") or {}
    options = service.model_options(rt, run["models"][0])
    end = run["completed_at"] or run["failed_at"] or run["cancelled_at"]
    done = counts["completed"] + counts["failed"]
    return {
        "uuid": run["id"], "name": run.get("name") or run["id"], "type": "lm-eval",
        "description": run.get("description"),
        "percentage": round(100 * done / counts["total"]) if counts["total"] else 0,
        "opaque": None, "status": run["status"], "modelServiceGroupUuid": None, "evaluatedServiceGroupUuid": None,
        "datasetUuid": run["suite_version_id"], "limits": settings.get("max_samples_per_task"),
        "maxNewTokens": gen.get("max_output_tokens"), "topK": gen.get("top_k"), "temperature": gen.get("temperature"),
        "topP": gen.get("top_p"), "prompt": gen.get("instructions"), "repetitionPenalty": gen.get("repetition_penalty"),
        "maxLength": options.get("max_model_len"), "model": ",".join(run["models"]), "url": options.get("base_url"),
        "parallel": settings.get("generation_concurrency"), "logEveryQuery": False,
        "api": options.get("api") or options.get("backend"), "requestHeaders": options.get("headers") or {},
        "connectTimeout": options.get("connect_timeout"), "readTimeout": options.get("read_timeout"),
        # one number, as the inventory has one: the sample-weighted mean of each (model, task)'s first metric
        "totalScore": service.headline_score(run["metrics"]),
        "endTime": _time(end), "createDate": _time(run["created_at"]),
        "lastOpDate": _time(max(x for x in (run["created_at"], run["started_at"], end) if x)),
        "systemTags": run.get("system_tags", []), "userTags": run.get("user_tags", []),
    }


@router.get("")
def list_tasks(request: Request):
    def body():
        caller, rt = _caller(request), request.app.state.runtime
        return {"inventories": [inventory(rt, r) for r in service.list_runs(rt, org_id=caller.org_id, limit=1000)]}
    return _answer(body)


@router.get("/{uuid}")
def get_task(request: Request, uuid: str):
    def body():
        caller, rt = _caller(request), request.app.state.runtime
        return {"inventory": inventory(rt, service.get_run(rt, uuid, org_id=caller.org_id))}
    return _answer(body)


@router.put("/{uuid}")
async def update_task(request: Request, uuid: str):
    try:
        payload = await json_body(request)
    except InvalidInput as e:
        return _error(e)

    def body():
        caller, rt = _caller(request), request.app.state.runtime
        update = payload.get("updateModelEvaluationTask")
        if not isinstance(update, dict):
            raise InvalidInput("updateModelEvaluationTask", "is required: {name, description}")
        changes = {k: update[k] for k in ("name", "description") if k in update}
        for src, dst in (("systemTags", "system_tags"), ("userTags", "user_tags")):
            if payload.get(src) is not None:
                changes[dst] = payload[src]
        return {"inventory": inventory(rt, service.update_run(rt, uuid, changes, org_id=caller.org_id))}
    return _answer(body)
