"""Eval runs as the catalog records them: the `eval.run` object with its live counts, lookups, listings.

A run is planned as (model, task) partitions when it is created (creation.py); their rows carry the
progress that request_counts and token totals are summed from, so concurrent partitions never contend for
one counter.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Iterable, Literal, NotRequired, Protocol, TypedDict, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from eval_pipeline.errors import NotFound
from eval_pipeline.scoring.gradability import PREDICT_ONLY, REFUSED
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t

TERMINAL = ("completed", "failed", "cancelled")


DEFAULT_ORG, DEFAULT_TEAM = "org_default", "team_default"  # runs made without an API key (CLI, Dagster)


class RequestCounts(TypedDict):
    """Requests of a run: planned in all, answered, and failed."""

    total: int
    completed: int
    failed: int


class TokenCounts(TypedDict):
    """Tokens of a run's answered requests; `cached` counts the input tokens of requests answered from the
    generation cache; `reasoning` is always 0 (no backend reports it separately)."""

    input: int
    output: int
    cached: int
    reasoning: int


class TaskError(TypedDict):
    """A (model, task) no rule grades: `code` predict-only or not-gradable, `message` the reason."""

    model: str
    task_id: str
    task: str
    code: str
    message: str | None


class PartitionProgress(TypedDict):
    """One (model, task) partition of a run as `get_run(..., partitions=True)` shows it."""

    model: str
    task_id: str
    partition_key: str  # "model key|task key", the Dagster partition
    status: str  # pending | running | done | failed | cancelled
    planned: int
    completed: int
    failed: int
    chunks: int  # chunks written
    engine: dict[str, Any] | None  # what answered: backend, resolved dtype, max_model_len, tokenizer
    grading: dict[str, Any] | None  # {status, reason}: how the task was graded
    engine_seconds: float  # generation cost, summed over executions (see Cost)
    gpu_seconds: float
    wall_seconds: float


class Cost(TypedDict):
    """What generating a run (or one model's part of it) cost: seconds inside the engine, those times the
    GPUs it held, the generation steps' wall time (seconds, summed over partitions and executions), and
    tokens in and out."""

    engine_seconds: float
    gpu_seconds: float
    wall_seconds: float
    input_tokens: int
    output_tokens: int


class RunCost(Cost):
    """A run's Cost, and the same per model."""

    by_model: dict[str, Cost]


class RunObject(TypedDict):
    """The `eval.run` document: what the CLI prints, export bundles embed, the report reads, and MKA1's
    API serves (its shape is the brief's, after MKA1's EvalRun; `agent_*` and `cost_usd` are MKA1's fields
    this product never sets). Times are Unix seconds."""

    id: str
    object: Literal["eval.run"]
    name: str | None
    description: str | None
    suite_id: str
    suite_version: int
    suite_version_id: str
    org_id: str
    team_id: str
    status: str  # queued | in_progress | finalizing | completed | failed | cancelling | cancelled
    models: list[str]
    task_ids: list[str] | None
    judge_model: str | None
    embedding_model: str | None
    generation: dict[str, Any]
    request_counts: RequestCounts
    metrics: dict[str, Any] | None  # model -> task -> "metric,filter" -> {value, stderr, ci_low, ci_high, n}
    error: dict[str, Any] | None  # {code, message, model, task}
    artifact_file_ids: list[str]
    metadata: dict[str, Any] | None
    agent_name: None
    agent_version: None
    agent_effort: None
    cost_usd: None
    tokens: TokenCounts
    created_at: int
    started_at: int | None
    completed_at: int | None
    cancelled_at: int | None
    failed_at: int | None
    settings: dict[str, Any]
    system_tags: list[str]
    user_tags: list[str]
    attempt: int
    engines: dict[str, dict[str, Any]]  # model -> what answered it
    task_errors: list[TaskError]
    cost: RunCost  # generation's engine, GPU and wall seconds and tokens, in total and per model
    partitions: NotRequired[list[PartitionProgress]]


def _index_for_search(run: t.Run) -> None:
    run.search_text = f"{(run.name or '').lower()} {run.id.lower()}"
    run.model_list = "|" + "|".join(run.models) + "|"


def _totals(s: Session, run_id: str) -> dict[str, int]:
    row = s.execute(select(func.coalesce(func.sum(t.RunPartition.completed), 0),
                           func.coalesce(func.sum(t.RunPartition.failed), 0),
                           func.coalesce(func.sum(t.RunPartition.input_tokens), 0),
                           func.coalesce(func.sum(t.RunPartition.output_tokens), 0),
                           func.coalesce(func.sum(t.RunPartition.cached), 0))
                    .where(t.RunPartition.run_id == run_id)).one()
    return {"completed": int(row[0]), "failed": int(row[1]), "input": int(row[2]), "output": int(row[3]),
            "cached": int(row[4])}


def run_cost(s: Session, run_id: str) -> RunCost:
    """The run's generation cost in total and per model (RunCost), summed over its partitions."""
    rows = s.execute(select(t.RunPartition.model, func.sum(t.RunPartition.engine_seconds),
                            func.sum(t.RunPartition.gpu_seconds), func.sum(t.RunPartition.wall_seconds),
                            func.sum(t.RunPartition.input_tokens), func.sum(t.RunPartition.output_tokens))
                     .where(t.RunPartition.run_id == run_id).group_by(t.RunPartition.model)
                     .order_by(t.RunPartition.model)).all()
    by_model: dict[str, Cost] = {
        model: {"engine_seconds": round(float(e or 0), 3), "gpu_seconds": round(float(g or 0), 3),
                "wall_seconds": round(float(w or 0), 3), "input_tokens": int(i or 0), "output_tokens": int(o or 0)}
        for model, e, g, w, i, o in rows}
    total: RunCost = {"engine_seconds": 0.0, "gpu_seconds": 0.0, "wall_seconds": 0.0, "input_tokens": 0,
                      "output_tokens": 0, "by_model": by_model}
    for cost in by_model.values():
        for key in ("engine_seconds", "gpu_seconds", "wall_seconds"):
            total[key] = round(total[key] + cost[key], 3)
        total["input_tokens"] += cost["input_tokens"]
        total["output_tokens"] += cost["output_tokens"]
    return total


def _engines_and_task_errors(s: Session, run_id: str) -> tuple[dict[str, dict[str, Any]], list[TaskError]]:
    """`engines`: per model, what answered (backend, resolved dtype, max_model_len, tokenizer);
    `task_errors`: per (model, task) a task no rule grades, with the reason (the run still completes)."""
    rows = s.execute(select(t.RunPartition.model, t.RunPartition.task_id, t.RunPartition.engine,
                            t.RunPartition.grading).where(t.RunPartition.run_id == run_id)).all()
    errors = not_graded(s, [SimpleNamespace(model=m, task_id=tid, grading=g) for m, tid, _, g in rows])
    return ({m: e for m, _, e, _ in rows if e},
            [{"model": e["model"], "task_id": e["task_id"], "task": e["task"], "code": e["status"],
              "message": e["reason"]} for e in errors])


def run_object(s: Session, run: t.Run, *, partitions: bool = False) -> RunObject:
    """The MKA1 `eval.run` object of `run`, every field present (times in Unix seconds, `tokens` and
    `request_counts` summed over its partitions); with `partitions`, also a `partitions` list of
    {model, task_id, partition_key, status, planned, completed, failed, chunks, engine, grading}."""
    totals = _totals(s, run.id)
    engines, task_errors = _engines_and_task_errors(s, run.id)
    out: RunObject = {
        "id": run.id, "object": "eval.run", "name": run.name, "description": run.description,
        "suite_id": run.suite_id, "suite_version": run.suite_version, "suite_version_id": run.suite_version_id,
        "org_id": run.org_id, "team_id": run.team_id, "status": run.status, "models": run.models,
        "task_ids": run.task_ids, "judge_model": run.judge_model, "embedding_model": run.embedding_model,
        "generation": run.generation,
        "request_counts": {"total": run.request_total, "completed": totals["completed"],
                           "failed": totals["failed"]},
        "metrics": run.metrics, "error": run.error, "artifact_file_ids": run.artifact_file_ids,
        "metadata": run.metadata_, "agent_name": None, "agent_version": None, "agent_effort": None,
        "cost_usd": None,
        # `cached` counts input tokens of requests answered from the generation cache.
        "tokens": {"input": totals["input"], "output": totals["output"], "cached": totals["cached"],
                   "reasoning": 0},
        "created_at": run.created_at, "started_at": run.started_at, "completed_at": run.completed_at,
        "cancelled_at": run.cancelled_at, "failed_at": run.failed_at,
        "settings": run.settings, "system_tags": run.system_tags or [], "user_tags": run.user_tags or [],
        "attempt": run.attempt or 0,
        "engines": engines, "task_errors": task_errors, "cost": run_cost(s, run.id),
    }
    if partitions:
        out["partitions"] = [
            {"model": p.model, "task_id": p.task_id, "partition_key": f"{p.model_key}|{p.task_key}",
             "status": p.status, "planned": p.planned, "completed": p.completed, "failed": p.failed,
             "chunks": len(p.chunks), "engine": p.engine, "grading": p.grading,
             "engine_seconds": p.engine_seconds, "gpu_seconds": p.gpu_seconds, "wall_seconds": p.wall_seconds}
            for p in s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run.id)
                               .order_by(t.RunPartition.model, t.RunPartition.task_key))]
    return out


def run_row(s: Session, run_id: str, org_id: str | None = None) -> t.Run:
    """The run, or NotFound, also when it belongs to another org than `org_id` (when given)."""
    run = s.get(t.Run, run_id)
    if run is None or (org_id is not None and run.org_id != org_id):
        raise NotFound("run", run_id)
    return run


def get_run(catalog: Catalog, run_id: str, *, partitions: bool = False,
            org_id: str | None = None) -> RunObject:
    """The run's `eval.run` object (see run_object). Raises NotFound when there is no such run in `org_id`."""
    with catalog.session() as s:
        return run_object(s, run_row(s, run_id, org_id), partitions=partitions)


def list_runs(catalog: Catalog, *, status: str | None = None, suite_id: str | None = None,
              limit: int = 20, after: str | None = None, org_id: str | None = None,
              suite_version: int | None = None, created_by: str | None = None,
              origin: str | None = None) -> list[RunObject]:
    """Up to `limit` `eval.run` objects, newest first; `after` is the id of the last run of the previous
    page. `org_id` limits to one org (the API always passes the caller's); `created_by` to one user's runs
    (owned_only); `origin` to the runs one source made (e.g. `schedule:<id>`). Raises NotFound when `after`
    is not a run (of `org_id`)."""
    with catalog.session() as s:
        q = select(t.Run).order_by(t.Run.created_ns.desc(), t.Run.id.desc())
        if org_id is not None:
            q = q.where(t.Run.org_id == org_id)
        if suite_version is not None:
            q = q.where(t.Run.suite_version == suite_version)
        if created_by is not None:
            q = q.where(t.Run.created_by == created_by)
        if origin is not None:
            q = q.where(t.Run.origin == origin)
        if status:
            q = q.where(t.Run.status == status)
        if suite_id:
            q = q.where(t.Run.suite_id == suite_id)
        if after:
            anchor = run_row(s, after, org_id)
            q = q.where((t.Run.created_ns < anchor.created_ns)
                        | ((t.Run.created_ns == anchor.created_ns) & (t.Run.id < anchor.id)))
        return [run_object(s, r) for r in s.scalars(q.limit(limit))]


def queued_runs(catalog: Catalog) -> list[RunObject]:
    """The `eval.run` objects of every queued run, any org, oldest first (the order they are taken in)."""
    with catalog.session() as s:
        return [run_object(s, r) for r in s.scalars(select(t.Run).where(t.Run.status == "queued")
                                                    .order_by(t.Run.created_ns, t.Run.id))]


def run_partitions(catalog: Catalog, run_id: str) -> list[t.RunPartition]:
    """The run's partition rows (detached), by model then task key. An unknown run has none."""
    with catalog.session() as s:
        q = select(t.RunPartition).where(t.RunPartition.run_id == run_id)
        return list(s.scalars(q.order_by(t.RunPartition.model, t.RunPartition.task_key)))


def run_artifacts(catalog: Catalog, run_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """MKA1's `eval.artifacts` of the run: its `artifact_file_ids` (the report); raises NotFound as get_run."""
    with catalog.session() as s:
        run = run_row(s, run_id, org_id)
        return {"object": "eval.artifacts", "run_id": run.id, "result_file_id": None, "samples_file_id": None,
                "artifact_file_ids": list(run.artifact_file_ids or [])}


def run_attempt(catalog: Catalog, run_id: str) -> int:
    """How many times the run was queued again (retry, rerun-failed); 0 also for an unknown run."""
    with catalog.session() as s:
        return s.scalar(select(t.Run.attempt).where(t.Run.id == run_id)) or 0


def partition_chunks(catalog: Catalog, run_id: str, model: str, task_id: str) -> list[dict[str, Any]]:
    """The partition's written chunks as recorded ({index, path, completed, failed, input_tokens,
    output_tokens, cached_tokens...}, by index); [] for an unknown partition."""
    with catalog.session() as s:
        part = s.get(t.RunPartition, (run_id, model, task_id))
        return list(part.chunks) if part else []


def run_for_origin(catalog: Catalog, origin: str) -> str | None:
    """The id of a run made from `origin` (e.g. "backfill:<id>"), or None."""
    with catalog.session() as s:
        return s.scalar(select(t.Run.id).where(t.Run.origin == origin).limit(1))


def partition_by_keys(catalog: Catalog, run_id: str, model_key: str, task_key: str) -> t.RunPartition:
    """The run's partition (detached) of a Dagster partition key's model and task keys; raises NotFound."""
    with catalog.session() as s:
        part = s.scalar(select(t.RunPartition).where(t.RunPartition.run_id == run_id,
                                                     t.RunPartition.model_key == model_key,
                                                     t.RunPartition.task_key == task_key))
        if part is None:
            raise NotFound("run partition", f"{run_id}/{model_key}|{task_key}")
        return part


class _GradedPartition(Protocol):
    """What not_graded reads of a partition: a RunPartition row, or any object with these attributes."""

    @property
    def model(self) -> str: ...

    @property
    def task_id(self) -> str: ...

    @property
    def grading(self) -> dict[str, Any] | None: ...


def not_graded(s: Session, parts: Iterable[_GradedPartition]) -> list[dict[str, Any]]:
    """{model, task, task_id, status, reason} of the partitions whose task no rule grades (predict-only
    or not gradable), from what their grading recorded; `task` is the task's name."""
    out = []
    for p in parts:
        status = (p.grading or {}).get("status")
        if status in (REFUSED, PREDICT_ONLY):
            out.append({"model": p.model, "task": cast(t.Task, s.get(t.Task, p.task_id)).name, "task_id": p.task_id,
                        "status": status, "reason": cast(dict[str, Any], p.grading).get("reason")})
    return out


def suite_runs(catalog: Catalog, suite_id: str) -> list[tuple[str, str]]:
    """[(run id, status)] of every run of a suite, any org."""
    with catalog.session() as s:
        return [(i, st) for i, st in s.execute(select(t.Run.id, t.Run.status).where(t.Run.suite_id == suite_id))]
