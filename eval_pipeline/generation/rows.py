"""Generation rows: what a backend returns per request, and the Parquet schema they are stored in."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from eval_pipeline.generation.requests import GenRequest
from eval_pipeline.stores.lake import BULK


@dataclass
class Outcome:
    """A backend's answer to one request: the text (generate_until) or the continuation's summed logprob
    (loglikelihood), token counts, latency in milliseconds, attempts made, and `error` when it failed."""

    output_text: str | None = None
    output_token_ids: list[int] | None = None
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    logprob: float | None = None  # loglikelihood: sum over the continuation's tokens
    is_greedy: bool | None = None  # loglikelihood: every continuation token was the argmax
    latency_ms: float = 0.0
    attempts: int = 1
    error: str | None = None


GENERATIONS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("task_id", pa.string()), ("task", pa.string()),
    ("doc_id", pa.int64()), ("request_index", pa.int64()), ("request_kind", pa.string()),
    ("prompt_hash", pa.string()), pa.field("cache_key", pa.string(), metadata=BULK),
    pa.field("prompt", pa.string(), metadata=BULK), pa.field("continuation", pa.string(), metadata=BULK),
    pa.field("output_text", pa.string(), metadata=BULK), ("output_token_ids", pa.list_(pa.int32())),
    ("finish_reason", pa.string()), ("input_tokens", pa.int32()), ("output_tokens", pa.int32()),
    ("logprob", pa.float64()), ("is_greedy", pa.bool_()), ("latency_ms", pa.float64()),
    ("attempts", pa.int32()), ("cached", pa.bool_()), ("error", pa.string()),
])


def prompt_hash(text: str) -> str:
    """sha256 of the prompt text, as lm-eval's `prompt_hash` (so a run joins with imported samples)."""
    return hashlib.sha256(text.encode()).hexdigest()


def build_rows(ident: dict[str, str], requests: list[GenRequest], outcomes: list[Outcome], cache_keys: list[str],
               cached: list[bool]) -> pa.Table:
    """A GENERATIONS_SCHEMA table, one row per request; `ident` has run_id, model, task_id and task, and the
    other lists are parallel to `requests`."""
    n = len(requests)
    cols = {
        "run_id": [ident["run_id"]] * n, "model": [ident["model"]] * n, "task_id": [ident["task_id"]] * n,
        "task": [ident["task"]] * n,
        "doc_id": [r.doc_id for r in requests], "request_index": [r.index for r in requests],
        "request_kind": [r.kind for r in requests], "prompt_hash": [prompt_hash(r.context) for r in requests],
        "cache_key": cache_keys, "prompt": [r.context for r in requests],
        "continuation": [r.continuation for r in requests],
        "output_text": [o.output_text for o in outcomes], "output_token_ids": [o.output_token_ids for o in outcomes],
        "finish_reason": [o.finish_reason for o in outcomes], "input_tokens": [o.input_tokens for o in outcomes],
        "output_tokens": [o.output_tokens for o in outcomes], "logprob": [o.logprob for o in outcomes],
        "is_greedy": [o.is_greedy for o in outcomes], "latency_ms": [o.latency_ms for o in outcomes],
        "attempts": [o.attempts for o in outcomes], "cached": cached, "error": [o.error for o in outcomes],
    }
    return pa.table(cols, schema=GENERATIONS_SCHEMA)


def outcome_from_row(row: dict[str, Any]) -> Outcome:
    """A stored row as an Outcome, for the cache (attempts 0: nothing was asked of the model)."""
    return Outcome(row["output_text"], row["output_token_ids"], row["finish_reason"], row["input_tokens"],
                   row["output_tokens"], row["logprob"], row["is_greedy"], 0.0, 0, None)
