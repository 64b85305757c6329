"""The FastAPI application: authentication, the error envelope, and the route modules.

Every route is an adapter over a core function; errors map as the CLI's do: bad input 400, unknown or
another org's object 404, a state conflict 409, a malformed request 422 (all `{"error": {"code",
"message", "details"}}`), so the SDKs, which retry 5xx, never repeat a request for bad input."""
from __future__ import annotations

from contextlib import asynccontextmanager

import dagster  # noqa: F401  (imported before the app serves: its import is slow and not thread-friendly)
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from eval_pipeline.api import backfills, mka1, qianfan, schedules, zstack
from eval_pipeline.api.common import Unauthorized
from eval_pipeline.errors import (
    Conflict,
    EvalPipelineError,
    InvalidInput,
    MalformedFile,
    NotFound,
    SourceAuthError,
    SourceUnavailable,
)
from eval_pipeline.orchestration.worker import Worker
from eval_pipeline.service import Runtime

FILES_PREFIX = "/api/v1/llm/files"


# A source that cannot be reached is the one 5xx (503: retrying may help); bad input never is.
STATUS = {InvalidInput: 400, SourceAuthError: 400, MalformedFile: 400, NotFound: 404, Conflict: 409,
          SourceUnavailable: 503}


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def create_app(runtime: Runtime, *, execute: bool = False, worker_interval: float = 2.0) -> FastAPI:
    """The service; with `execute`, its own worker runs queued eval runs and exports (no daemon)."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = None
        if execute:
            worker = Worker(runtime, worker_interval).start()
        yield
        if worker is not None:
            worker.stop()

    app = FastAPI(title="eval_pipeline", version="1", lifespan=lifespan,
                  description="LLM evaluation service (MKA1-compatible evals API)")
    app.state.runtime = runtime

    @app.exception_handler(EvalPipelineError)
    async def _core_error(request: Request, exc: EvalPipelineError) -> JSONResponse:
        status = 401 if isinstance(exc, Unauthorized) else next(
            (code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
        details = {"field": exc.field} if isinstance(exc, InvalidInput) else (
            {"file": exc.path, "line": exc.line} if isinstance(exc, MalformedFile) else None)
        body = error_body(exc.code, str(exc), details)
        if request.url.path.startswith(FILES_PREFIX):  # the SDK's files errors: an integer code, a type
            body["error"] |= {"type": exc.code, "code": status}
        return JSONResponse(body, status_code=status)

    @app.exception_handler(OperationalError)
    async def _catalog_unreachable(request: Request, exc: OperationalError) -> JSONResponse:
        # the catalog's server went away (a restart, a network cut): the request was fine; retry it
        return JSONResponse(error_body("unavailable", "the catalog database is not reachable; retry shortly", None),
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header", "body"))
        return JSONResponse(error_body("invalid_request", f"{field}: {first.get('msg', 'invalid')}",
                                       {"field": field}), status_code=422)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok"}

    app.include_router(mka1.router)
    app.include_router(schedules.router)
    app.include_router(backfills.router)
    app.include_router(mka1.files_router)
    app.include_router(qianfan.router)
    app.include_router(zstack.router)
    return app

