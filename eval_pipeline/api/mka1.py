"""MKA1's evals API (`/api/v1/llm/evals`), as the `meetkai-mka1` SDK speaks it: every response is a
200 JSON object with every field of the SDK's model; lists are {object, data, has_more, first_id,
last_id}."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from eval_pipeline import service
from eval_pipeline.api.common import Caller, json_body, page
from eval_pipeline.errors import InvalidInput
from eval_pipeline.service import Principal

router = APIRouter(prefix="/api/v1/llm/evals", tags=["evals"])


RunStatus = Literal["queued", "in_progress", "finalizing", "completed", "failed", "cancelling", "cancelled"]


@router.post("/runs")
async def create_run(request: Request, caller: Principal = Caller) -> dict:
    """Create an eval run (queued for the sensor). An `Idempotency-Key` makes a repeat return the first."""
    return service.create_run(request.app.state.runtime, await json_body(request), origin="api",
                              org_id=caller.org_id, team_id=caller.team_id, created_by=caller.user,
                              idempotency_key=request.headers.get("idempotency-key") or None)


MAX_INT32 = 2 ** 31 - 1  # version columns are 32-bit integers: a larger number names no version


@router.get("/runs")
def list_runs(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100),
              owned_only: bool = False, suite_id: str | None = None,
              suite_version: int | None = Query(None, ge=1, le=MAX_INT32), status: RunStatus | None = None,
              caller: Principal = Caller) -> dict:
    if owned_only and not caller.user:
        raise InvalidInput("owned_only", "needs X-On-Behalf-Of naming the user whose runs to list")
    items = service.list_runs(request.app.state.runtime, status=status, suite_id=suite_id, limit=limit + 1,
                           after=after, org_id=caller.org_id, suite_version=suite_version,
                           created_by=caller.user if owned_only else None)
    return page(items, limit)


@router.get("/runs/{run_id}")
def get_run(request: Request, run_id: str, caller: Principal = Caller) -> dict:
    return service.get_run(request.app.state.runtime, run_id, org_id=caller.org_id)


@router.post("/runs/{run_id}/cancel")
def cancel_run(request: Request, run_id: str, caller: Principal = Caller) -> dict:
    return service.cancel_run(request.app.state.runtime, run_id, org_id=caller.org_id)


@router.post("/imports/huggingface-results")
async def import_historical_results(request: Request, caller: Principal = Caller) -> dict:
    """Import lm-eval results from a Hugging Face dataset repo with the caller's own token (required,
    used for this call only: never stored, logged or replaced by a server-side token)."""
    token = request.headers.get("x-huggingface-token")
    if not token:
        raise InvalidInput("X-HuggingFace-Token", "header is required: the caller's Hugging Face token")
    body = await json_body(request)
    source = body.get("source")
    if isinstance(source, dict) and source.get("type", "huggingface") != "huggingface":
        raise InvalidInput("source.type", "must be huggingface over the API")
    result = service.import_historical(request.app.state.runtime, body, hub_token=token, org_id=caller.org_id,
                                       team_id=caller.team_id, created_by=caller.user)
    out = result.to_dict()
    if out["suite_id"] is None:  # a dry run into a suite not created yet: the SDK's model wants a string
        out["suite_id"] = ""
    return out


@router.get("/suites")
def list_suites(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100),
                owned_only: bool = False, caller: Principal = Caller) -> dict:
    if owned_only and not caller.user:
        raise InvalidInput("owned_only", "needs X-On-Behalf-Of naming the user whose suites to list")
    items = service.list_suites(request.app.state.runtime, org_id=caller.org_id, after=after, limit=limit + 1,
                                created_by=caller.user if owned_only else None)
    return page(items, limit)


@router.post("/suites")
async def create_suite(request: Request, caller: Principal = Caller) -> dict:
    """A suite from a manifest of tasks whose datasets are Hub dataset repos (an `X-HuggingFace-Token`
    header, if sent, reads private ones, for this call only)."""
    return service.create_suite(request.app.state.runtime, await json_body(request), org_id=caller.org_id,
                                team_id=caller.team_id, created_by=caller.user,
                                hub_token=request.headers.get("x-huggingface-token") or None)


@router.delete("/suites/{suite_id}")
def delete_suite(request: Request, suite_id: str, caller: Principal = Caller) -> dict:
    return service.delete_suite(request.app.state.runtime, suite_id, org_id=caller.org_id)


@router.post("/suites/{suite_id}/versions")
async def create_suite_version(request: Request, suite_id: str, caller: Principal = Caller) -> dict:
    return service.create_suite_version(request.app.state.runtime, suite_id, await json_body(request),
                                        org_id=caller.org_id, created_by=caller.user,
                                        hub_token=request.headers.get("x-huggingface-token") or None)


@router.get("/suites/{suite_id}")
def get_suite(request: Request, suite_id: str, caller: Principal = Caller) -> dict:
    return service.get_suite(request.app.state.runtime, suite_id, org_id=caller.org_id, versions_too=False)


@router.get("/suites/{suite_id}/versions")
def list_suite_versions(request: Request, suite_id: str, after: str | None = None,
                        limit: int = Query(20, ge=1, le=100), caller: Principal = Caller) -> dict:
    versions = service.get_suite(request.app.state.runtime, suite_id, org_id=caller.org_id)["versions"]
    if after:
        ids_ = [v["id"] for v in versions]
        if after not in ids_:
            raise InvalidInput("after", f"{after} is not a version of suite {suite_id}")
        versions = versions[ids_.index(after) + 1:]
    return page(versions, limit)


@router.get("/suites/{suite_id}/versions/{version}")
def get_suite_version(request: Request, suite_id: str, version: int = Path(ge=1, le=MAX_INT32),
                      caller: Principal = Caller) -> dict:
    return service.get_suite_version(request.app.state.runtime, suite_id, version, org_id=caller.org_id)


@router.delete("/runs/{run_id}")
def delete_run(request: Request, run_id: str, caller: Principal = Caller) -> dict:
    return service.delete_run(request.app.state.runtime, run_id, org_id=caller.org_id)


@router.post("/runs/{run_id}/retry")
def retry_run(request: Request, run_id: str, caller: Principal = Caller) -> dict:
    return service.retry_run(request.app.state.runtime, run_id, org_id=caller.org_id)


@router.post("/runs/{run_id}/rerun-failed")
def rerun_failed(request: Request, run_id: str, caller: Principal = Caller) -> dict:
    """Queue a finished run again for its failed samples only (409 when it has none)."""
    return service.rerun_failed(request.app.state.runtime, run_id, org_id=caller.org_id)


@router.get("/runs/{run_id}/overview")
def get_overview(request: Request, run_id: str, metric: str = Query("reward", min_length=1, max_length=128),
                 caller: Principal = Caller) -> dict:
    """One score (`metric`: "reward" means each model and task's first metric; else a metric name),
    the sample counts and tokens."""
    return service.run_overview(request.app.state.runtime, run_id, metric=metric, org_id=caller.org_id)


@router.get("/runs/{run_id}/artifacts")
def get_artifacts(request: Request, run_id: str, caller: Principal = Caller) -> dict:
    return service.run_artifacts(request.app.state.runtime, run_id, org_id=caller.org_id)


@router.get("/runs/{run_id}/samples")
def list_samples(request: Request, run_id: str, after: str | None = None, limit: int = Query(100, ge=1, le=1000),
                 task_id: str | None = None, model: str | None = None, status: str | None = None,
                 score_metric: str | None = None, score_min: float | None = None, score_max: float | None = None,
                 include_dataset_row: bool = True, include_reasoning: bool = False,
                 sample_index: str | None = None, caller: Principal = Caller) -> dict:
    if sample_index is not None and not sample_index.isdigit():  # the SDK sends it as a string
        raise InvalidInput("sample_index", "must be a non-negative integer")
    data, more = service.list_samples(request.app.state.runtime, run_id, org_id=caller.org_id, after=after,
                                      limit=limit, task_id=task_id, model=model, status=status,
                                      score_metric=score_metric, score_min=score_min, score_max=score_max,
                                      include_dataset_row=include_dataset_row,
                                      sample_index=int(sample_index) if sample_index is not None else None)
    return {"object": "list", "data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


@router.post("/runs/{run_id}/samples/{sample_index}/grade")
async def grade_sample(request: Request, run_id: str, sample_index: int, caller: Principal = Caller) -> dict:
    """A person's grade (score 0-1, rationale) of one generated sample of a manual task, `{"model",
    "task_id", "score", "rationale"?}`; the grader is X-On-Behalf-Of unless the body names one. The last
    grade of a run completes it; a later one corrects and refreshes its metrics."""
    rt = request.app.state.runtime
    service.get_run(rt, run_id, org_id=caller.org_id)  # another org's run is 404
    body = await json_body(request)
    if "doc_id" in body and body["doc_id"] != sample_index:
        raise InvalidInput("doc_id", "must match the sample index of the path (or be left out)")
    body = {"grader": caller.user, **body, "doc_id": sample_index}
    return service.grade_sample(rt, run_id, body)


files_router = APIRouter(prefix="/api/v1/llm/files", tags=["files"])


@files_router.get("/{file_id}")
def get_file(request: Request, file_id: str, caller: Principal = Caller) -> dict:
    """A run artifact, a suite's task inputs or a system-storage export file the caller's org owns."""
    return service.get_file(request.app.state.runtime, file_id, org_id=caller.org_id)


@files_router.get("/{file_id}/content")
def get_file_content(request: Request, file_id: str, caller: Principal = Caller) -> StreamingResponse:
    pieces, media, name = service.file_content(request.app.state.runtime, file_id, org_id=caller.org_id)
    return StreamingResponse(pieces, media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})

