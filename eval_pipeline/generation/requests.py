"""The requests of one (model, task) partition, from the task version's inputs and the run's settings."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow.compute as pc

from eval_pipeline.harness.jsonio import loads
from eval_pipeline.stores.lake import Lake

LM_EVAL_MAX_GEN_TOKS = 256  # lm-eval's default when a task does not say
_SAMPLING_KEYS = ("top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty",
                  "seed")


@dataclass(frozen=True)
class GenRequest:
    """One request to a model, as lm-eval's `Instance`: `kind` is its request type (generate_until,
    loglikelihood, loglikelihood_rolling), `context` its first argument, `continuation` the text scored by a
    loglikelihood request, `repeat` which of a task's `repeats` copies it is (0-based)."""

    index: int  # position in the partition's plan; chunks are ranges of it
    doc_id: int
    kind: str
    context: str
    continuation: str | None
    params: dict[str, Any]  # the effective generation settings of this request (empty for loglikelihood)
    repeat: int = 0

    def cache_key(self, model_fingerprint: str, run_settings: dict[str, Any]) -> str:
        """Same model, same payload, same normalised settings, same repeat: same key (see
        generation/cache.py). Repeats are distinct requests: sampled answers must not collapse into one.

        `run_settings` is request_settings(run); returns 64 hex characters (sha256)."""
        payload: list[Any] = [model_fingerprint, self.kind, self.context, self.continuation, self.params, run_settings]
        if self.repeat:
            payload.append(self.repeat)
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def effective_params(task_kwargs: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """Task gen_kwargs (lm-eval's) overlaid with the run's generation config; the run wins where it speaks.

    Returns {until: [str], max_gen_toks: tokens (lm-eval's default 256), temperature, and the sampling keys
    either gives (top_p, top_k, min_p, penalties, seed)}; the run's `stop` and `max_output_tokens` map to
    until and max_gen_toks."""
    until = run.get("stop") if run.get("stop") is not None else task_kwargs.get("until")
    if isinstance(until, str):
        until = [until]
    out = {
        "until": list(until or []),
        "max_gen_toks": int(run.get("max_output_tokens") or task_kwargs.get("max_gen_toks")
                            or LM_EVAL_MAX_GEN_TOKS),
        "temperature": _temperature(task_kwargs, run),
    }
    for key in _SAMPLING_KEYS:
        value = run.get(key, task_kwargs.get(key))
        if value is not None:
            out[key] = value
    return out


def _temperature(task: dict[str, Any], run: dict[str, Any]) -> float:
    """The run's word wins: do_sample false is greedy; an explicit temperature is used; do_sample true
    with no positive temperature samples at 1.0. Otherwise the task's: greedy when it says do_sample
    false (as transformers does), else its temperature (lm-eval's default 0)."""
    if run.get("do_sample") is False:
        return 0.0
    if run.get("temperature") is not None:
        return float(run["temperature"])
    task_temperature = 0.0 if task.get("do_sample") is False else float(task.get("temperature") or 0.0)
    if run.get("do_sample") is True and task_temperature <= 0:
        return 1.0
    return task_temperature


def request_settings(run: dict[str, Any]) -> dict[str, Any]:
    """The run settings outside a request's own parameters that change its answer: the prompt text a
    chat model sees, and what is sent to an endpoint besides."""
    return {k: run[k] for k in ("instructions", "chat_template_kwargs", "extra_body") if run.get(k) is not None}


ROLLING = "loglikelihood_rolling"


def plan_requests(lake: Lake, inputs_path: str, run_generation: dict[str, Any], max_samples: int | None,
                  repeats: int = 1) -> list[GenRequest]:
    """Every request of a task, in doc order: the first `max_samples` docs; per doc one generate_until or
    loglikelihood_rolling request, or one per (context, continuation) for loglikelihood; each `repeats`
    times (lm-eval's `repeats`: the copies of a doc's requests follow each other). `inputs_path` is the task
    version's INPUTS_SCHEMA file in the lake; `run_generation` the run's generation object."""
    table = lake.read_table(inputs_path)
    table = table.sort_by("doc_id")
    if max_samples is not None:
        table = table.slice(0, max_samples)
    columns = {name: table.column(name).to_pylist() for name in
               ("doc_id", "request_kind", "prompt", "continuations", "gen_kwargs")}
    contexts = (table.column("contexts").to_pylist() if "contexts" in table.column_names
                else [[]] * table.num_rows)
    out: list[GenRequest] = []
    params_cache: dict[str, dict[str, Any]] = {}
    for i, doc_id in enumerate(columns["doc_id"]):
        kind, prompt = request_kind(columns["request_kind"][i], columns["continuations"][i]), columns["prompt"][i]
        for repeat in range(repeats):
            if kind == "loglikelihood":
                conts = columns["continuations"][i] or []
                ctxs = contexts[i] or [prompt] * len(conts)
                for ctx, cont in zip(ctxs, conts):
                    out.append(GenRequest(len(out), doc_id, kind, ctx, cont, {}, repeat))
            elif kind == ROLLING:
                out.append(GenRequest(len(out), doc_id, kind, prompt, None, {}, repeat))
            else:
                raw = columns["gen_kwargs"][i] or "{}"
                if raw not in params_cache:
                    params_cache[raw] = effective_params(loads(raw) or {}, run_generation)
                out.append(GenRequest(len(out), doc_id, "generate_until", prompt, None, params_cache[raw], repeat))
    return out


def task_repeats(grading: dict[str, Any] | None) -> int:
    """lm-eval's `repeats` of a task (from its imported config): how many times each request is sent."""
    value = (grading or {}).get("repeats")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


def request_kind(stored: str, continuations: list[str] | None) -> str:
    """The request type of an inputs row; rows imported before rolling requests were told apart say
    loglikelihood with no continuation."""
    return ROLLING if stored == "loglikelihood" and not continuations else stored


def count_requests(lake: Lake, inputs_path: str, max_samples: int | None, repeats: int = 1) -> int:
    """How many requests plan_requests would make (docs x continuations x repeats), read from narrow
    columns."""
    table = lake.read_table(inputs_path, columns=["doc_id", "request_kind", "continuations"]).sort_by("doc_id")
    if max_samples is not None:
        table = table.slice(0, max_samples)
    is_ll = pc.equal(table.column("request_kind"), "loglikelihood")
    n_conts = pc.fill_null(pc.list_value_length(table.column("continuations")), 0)
    per_doc = pc.if_else(pc.and_(is_ll, pc.greater(n_conts, 0)), n_conts, 1)
    return int(pc.sum(per_doc).as_py() or 0) * max(1, repeats)
