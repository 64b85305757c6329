"""What every route module shares: the caller from its API key, and MKA1's JSON body and list page."""
from __future__ import annotations

import json
import math

from fastapi import Depends, Request

from eval_pipeline import service
from eval_pipeline.errors import EvalPipelineError, InvalidInput
from eval_pipeline.service import Principal


class Unauthorized(EvalPipelineError):
    """No valid API key: HTTP 401."""

    code = "unauthorized"


def principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <key>`; X-On-Behalf-Of names the user it acts for."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    found = service.authenticate(request.app.state.runtime, key.strip() if scheme.lower() == "bearer" else None,
                         request.headers.get("x-on-behalf-of") or None)
    if found is None:
        raise Unauthorized("a valid API key is required: Authorization: Bearer <key>")
    return found


Caller = Depends(principal)

def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: JSON has no infinity, and the answer could not be JSON either
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # json.loads would take NaN and Infinity


async def json_body(request: Request) -> dict:
    """The request's body as a JSON object (finite numbers only); InvalidInput (400) naming `body`
    otherwise."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}", parse_float=_finite, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise InvalidInput("body", f"is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    return body


def page(items: list[dict], limit: int) -> dict:
    """MKA1's list page of `items` (fetched with one extra to know `has_more`): {object, data, has_more, first_id,
    last_id}."""
    data = items[:limit]
    return {"object": "list", "data": data, "has_more": len(items) > limit,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}

