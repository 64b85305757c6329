"""Qianfan's model-evaluation operations (`POST /v2/eval?Action=...`), as the `qianfan` SDK's
`call_action` sends them: bce-auth-v1 signatures from AK/SK pairs (`keys create --kind aksk`), the
envelope {"requestId", "result"}, errors HTTP >= 400 with {"requestId", "code", "message"}. An "eval
task" is an eval run here; an export task is an export bundle.

The signature is checked here rather than with baidubce's signer: that one logs the derived signing key
at debug level, and a secret's derivative must not reach a log."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from datetime import datetime, timezone

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from eval_pipeline import service
from eval_pipeline.errors import Conflict, EvalPipelineError, InvalidInput, NotFound
from eval_pipeline.service import EXPORT_FORMATS, Principal, RunSummary

router = APIRouter(tags=["qianfan"])
MAX_SKEW = 300  # seconds a signature's date may lie ahead of or behind this server's clock
STATES = {"queued": "Queued", "running": "Running", "succeeded": "Succeeded", "failed": "Failed"}
RUN_STATES = {"queued": "Pending", "in_progress": "Running", "finalizing": "Running", "completed": "Done",
              "failed": "Failed", "cancelling": "Stopping", "cancelled": "Stopped"}


class QianfanError(Exception):
    """An answer in Qianfan's error envelope: HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _uri(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


def bce_signature(secret_key: str, auth_prefix: str, method: str, path: str, query: dict[str, str],
                  headers: dict[str, str], signed: list[str]) -> str:
    """bce-auth-v1: HMAC-SHA256 of the canonical request under HMAC-SHA256(SK, auth prefix)."""
    signing_key = hmac.new(secret_key.encode(), auth_prefix.encode(), hashlib.sha256).hexdigest()
    canonical_query = "&".join(sorted(f"{_uri(k)}={_uri(v)}" for k, v in query.items()
                                      if k.lower() != "authorization"))
    canonical_headers = "\n".join(sorted(f"{_uri(h)}:{_uri(headers[h].strip())}" for h in signed))
    text = "\n".join([method, path, canonical_query, canonical_headers])
    return hmac.new(signing_key.encode(), text.encode(), hashlib.sha256).hexdigest()


def _caller(request: Request) -> Principal:
    parts = request.headers.get("authorization", "").split("/")
    if len(parts) != 6 or parts[0] != "bce-auth-v1":
        raise QianfanError(401, "AccessDenied", "Authorization must be a bce-auth-v1 signature")
    _, ak, stamp, expires, signed_list, signature = parts
    try:
        signed_at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        expires_in = int(expires)
    except ValueError:
        raise QianfanError(401, "AccessDenied", "malformed signature date or expiry") from None
    if abs(time.time() - signed_at) > MAX_SKEW or time.time() > signed_at + expires_in:
        raise QianfanError(401, "RequestExpired", "the signature's x-bce-date is stale")
    rt = request.app.state.runtime
    caller = service.authenticate(rt, ak, kind="aksk")
    signed = [h for h in signed_list.split(";") if h]
    if caller is None or any(h not in request.headers for h in signed) or "host" not in signed:
        raise QianfanError(401, "AccessDenied", "unknown access key or unsigned host")
    expected = bce_signature(service.aksk_secret(rt, ak),
                             f"bce-auth-v1/{ak}/{stamp}/{expires}", request.method, request.url.path,
                             dict(request.query_params), {h: request.headers[h] for h in signed}, signed)
    if not hmac.compare_digest(expected, signature):
        raise QianfanError(401, "SignatureDoesNotMatch", "the request signature does not match")
    return caller


@router.post("/v2/eval")
async def eval_action(request: Request) -> JSONResponse:
    request_id = str(uuid.uuid4())
    try:
        caller = _caller(request)
        action = request.query_params.get("Action")
        handler = ACTIONS.get(action or "")
        if handler is None:
            raise QianfanError(400, "InvalidAction", f"unknown Action {action!r}")
        try:
            params = json.loads(await request.body() or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise QianfanError(400, "MalformedJSON", "the body is not JSON") from None
        if not isinstance(params, dict):
            raise QianfanError(400, "MalformedJSON", "the body must be a JSON object")
        result = handler(request.app.state.runtime, caller, params)
        return JSONResponse({"requestId": request_id, "result": result})
    except QianfanError as e:
        return JSONResponse({"requestId": request_id, "code": e.code, "message": e.message}, status_code=e.status)
    except EvalPipelineError as e:
        status = 404 if isinstance(e, NotFound) else 409 if isinstance(e, Conflict) else \
            400 if isinstance(e, InvalidInput) else 500
        code = {404: "ResourceNotFound", 409: "Conflict", 400: "InvalidParameter"}.get(status, "InternalError")
        return JSONResponse({"requestId": request_id, "code": code, "message": str(e)}, status_code=status)


def _required(params: dict, name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidInput(name, "is required")
    return value


def _task_item(run: RunSummary) -> dict:
    return {"taskId": run.id, "taskName": run.name or run.id, "evalType": run.eval_type, "evalMode": run.eval_mode,
            "description": run.description or "",
            "createTime": datetime.fromtimestamp(run.created_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}


def describe_eval_tasks(rt, caller: Principal, params: dict) -> dict:
    """The org's runs of the type, filtered, from the marker on; the page says whether more follow."""
    eval_type = params.get("evalType")
    if eval_type not in ("manual", "auto"):
        raise InvalidInput("evalType", "is required: manual or auto")
    max_keys = params.get("maxKeys", 10)
    if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
        raise InvalidInput("maxKeys", "must be a positive integer")
    max_keys = min(max_keys, 100)
    key_filter = params.get("keyFilter") or ""
    if not isinstance(key_filter, str):
        raise InvalidInput("keyFilter", "must be a string")
    marker = params.get("marker") or ""
    found = service.search_runs(rt, org_id=caller.org_id, eval_type=eval_type, key_filter=key_filter,
                                marker=marker, reverse=bool(params.get("pageReverse", False)), limit=max_keys)
    return {"evalTaskList": [_task_item(r) for r in found.runs],
            "pageInfo": {"marker": marker, "maxKeys": max_keys, "isTruncated": bool(found.next_marker),
                         "nextMarker": found.next_marker}}


def describe_eval_task(rt, caller: Principal, params: dict) -> dict:
    """DescribeEvalTask: one run as a Qianfan eval task, with its state, models, metrics and progress (%)."""
    run = service.get_run(rt, _required(params, "taskId"), org_id=caller.org_id)
    item = _task_item(service.run_summary(rt, run["id"]))
    counts = run["request_counts"]
    return item | {"state": RUN_STATES[run["status"]], "models": run["models"], "metrics": run["metrics"],
                   "progress": round(100 * (counts["completed"] + counts["failed"]) / counts["total"])
                   if counts["total"] else 0}


def stop_eval_task(rt, caller: Principal, params: dict) -> dict:
    """StopEvalTask: cancel the run and its Dagster runs (service.cancel_run), as the other doors do."""
    run = service.cancel_run(rt, _required(params, "taskId"), org_id=caller.org_id)
    return {"taskId": run["id"], "state": RUN_STATES[run["status"]]}


def create_export_task(rt, caller: Principal, params: dict) -> dict:
    """CreateEvalResultExportTask: queue an export of a completed run; {taskId}."""
    eval_id = _required(params, "evalId")
    service.get_run(rt, eval_id, org_id=caller.org_id)  # another org's run is not found
    storage = params.get("storageType", "sysStorage")
    if storage not in ("BOS", "sysStorage"):
        raise InvalidInput("storageType", "must be BOS or sysStorage")
    fmt = params.get("exportFormat", "bundle")
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput("exportFormat", f"must be one of {', '.join(EXPORT_FORMATS)} (lm-eval: the run as "
                                           "lm-eval 0.4.13's results and samples files)")
    content = params.get("exportContent")
    body = {"run_id": eval_id, "bucket": params.get("bucket"), "format": fmt,
            "storage_type": "object" if storage == "BOS" else "system"}
    if fmt == "bundle" and not isinstance(content, list):
        raise InvalidInput("exportContent", "is required: a list of prompt, prediction, completion, metrics, system")
    if content is not None:
        if fmt != "bundle":
            raise InvalidInput("exportContent", "is only for exportFormat bundle: an lm-eval export holds lm-eval's "
                                                "own results and samples files")
        body["content"] = content
    export = service.create_export(rt, body)
    # queued: the `queued_export_tasks` sensor, or the server's own worker (`serve --execute`), runs it
    return {"taskId": export["id"]}


def describe_export_task(rt, caller: Principal, params: dict) -> dict:
    """DescribeEvalResultExportTask: the export's state, storage, files and download location."""
    export = service.get_export(rt, _required(params, "taskId"))
    service.get_run(rt, export["run_id"], org_id=caller.org_id)
    return {"taskId": export["id"], "evalId": export["run_id"], "state": STATES[export["status"]],
            "storageType": "BOS" if export["storage_type"] == "object" else "sysStorage",
            "bucket": export["bucket"], "exportContent": export["content"], "exportFormat": export["format"],
            "downloadUrl": export["location"] or "",
            "files": export["files"] or [], "errorMessage": (export["error"] or {}).get("message", "")}


ACTIONS = {"DescribeEvalTasks": describe_eval_tasks, "DescribeEvalTask": describe_eval_task,
           "StopEvalTask": stop_eval_task, "CreateEvalResultExportTask": create_export_task,
           "DescribeEvalResultExportTask": describe_export_task}
