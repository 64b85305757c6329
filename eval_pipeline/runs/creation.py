"""Creating an eval run: the request validated, its models, suite version and tasks resolved, and the run
recorded `queued` with one planned partition per (model, task); also the run a Dagster UI backfill records
its work under."""
from __future__ import annotations

import time
from typing import Any, Sequence, cast

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from eval_pipeline import ids
from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.generation.requests import count_requests, task_repeats
from eval_pipeline.models.registry import Model, model_by_key, resolve_in
from eval_pipeline.runs.records import (
    DEFAULT_ORG,
    DEFAULT_TEAM,
    RunObject,
    _index_for_search,
    run_for_origin,
    run_object,
)
from eval_pipeline.runs.request import RunRequest
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.lake import Lake
from eval_pipeline.suites.versions import active_version_row


def _suite_version(s: Session, suite_id: str, version: int | None, org_id: str | None = None) -> t.SuiteVersion:
    suite = s.get(t.Suite, suite_id)
    if suite is None or (org_id is not None and suite.org_id != org_id):
        raise NotFound("suite", suite_id)
    if version is None:
        sv = active_version_row(s, suite)
        if sv is None:
            raise InvalidInput("suite_id", "the suite has no version yet")
        return sv
    sv = s.scalar(select(t.SuiteVersion).where(t.SuiteVersion.suite_id == suite_id,
                                               t.SuiteVersion.version == version))
    if sv is None:
        raise InvalidInput("suite_version", f"suite {suite_id} has no version {version}")
    return sv


def _runnable_tasks(s: Session, sv: t.SuiteVersion, task_ids: list[str] | None) -> Sequence[tuple[t.Task, int, str]]:
    """[(task, task version, inputs path)] to evaluate, in suite order (by name)."""
    rows = s.execute(select(t.Task, t.SuiteVersionTask.task_version, t.File.path)
                     .join(t.SuiteVersionTask, t.SuiteVersionTask.task_id == t.Task.id)
                     .join(t.TaskVersion, (t.TaskVersion.task_id == t.Task.id)
                           & (t.TaskVersion.version == t.SuiteVersionTask.task_version))
                     .outerjoin(t.File, t.File.id == t.TaskVersion.inputs_file_id)
                     .where(t.SuiteVersionTask.suite_version_id == sv.id).order_by(t.Task.name)).all()
    if task_ids is None:
        runnable = [r for r in rows if r[2] is not None]
        if not runnable:
            raise InvalidInput("suite_id", "no task of this suite version has evaluation inputs")
        return runnable
    by_id = {r[0].id: r for r in rows}
    for i, task_id in enumerate(task_ids):
        if task_id not in by_id:
            raise InvalidInput(f"task_ids[{i}]", f"{task_id} is not a task of suite version {sv.version}")
        if by_id[task_id][2] is None:
            raise InvalidInput(f"task_ids[{i}]", f"task {by_id[task_id][0].name} has no evaluation inputs "
                                                 "(its import had no samples)")
    return [by_id[i] for i in task_ids]


def eval_kind(task_modes: list[str | None]) -> tuple[str, str]:
    """(eval_type, eval_mode) of a run from its tasks' eval modes (None or "" counting as rule, "rule,model"
    as both): ("manual", "manual") if one task is manual; else ("auto", "rule", "model" or "rule,model")."""
    modes = {m for mode in task_modes for m in (mode or "rule").split(",")}
    if "manual" in modes:
        return "manual", "manual"
    return "auto", ",".join(m for m in ("rule", "model") if m in modes) or "rule"


def check_graders(s: Session, req: RunRequest, tasks: list[t.Task]) -> None:
    """Check the run's graders against its tasks: a judged task (eval_mode includes model) needs a judge
    model; the judge must resolve to a generative model (vllm or openai backend), the embedding model to a
    sentence-transformers or vllm one. Raises InvalidInput naming judge_model or embedding_model."""
    judged = [task.name for task in tasks if "model" in (task.eval_mode or "").split(",")]
    if judged and not req.judge_model:
        raise InvalidInput("judge_model", f"task {judged[0]} is graded by a judge model (eval_mode "
                                          "includes model): name one")
    if req.judge_model:
        if resolve_in(s, req.judge_model, "judge_model").backend not in ("vllm", "openai"):
            raise InvalidInput("judge_model", "must be a generative model (backend vllm or openai)")
    if req.embedding_model:
        if resolve_in(s, req.embedding_model, "embedding_model").backend == "openai":
            raise InvalidInput("embedding_model", "must be a sentence-transformers or vllm model")


def _resolve(s: Session, req: RunRequest, org_id: str | None
             ) -> tuple[list[Model], t.SuiteVersion, Sequence[tuple[t.Task, int, str]]]:
    models = [resolve_in(s, name, f"models[{i}]") for i, name in enumerate(req.models)]
    sv = _suite_version(s, req.suite_id, req.suite_version, org_id)
    tasks = _runnable_tasks(s, sv, req.task_ids)
    check_graders(s, req, [task for task, _, _ in tasks])
    return models, sv, tasks


def check_run_request(catalog: Catalog, req: RunRequest, *, org_id: str | None = None) -> None:
    """Everything create_run checks, writing nothing: the models resolve, the suite (of `org_id`) has the
    version, its tasks have inputs, the graders suit the tasks. Raises InvalidInput naming the field, or
    NotFound for the suite."""
    with catalog.session() as s:
        _resolve(s, req, org_id)


def _plan_partitions(s: Session, lake: Lake, run: t.Run, models: list[Model],
                     tasks: Sequence[tuple[t.Task, int, str]], cells: set[tuple[str, str]] | None = None) -> int:
    total = 0
    max_samples = run.settings.get("max_samples_per_task")
    counts = {task.id: count_requests(lake, path, max_samples, task_repeats(task.grading))
              for task, _, path in tasks}
    for model in models:
        for task, version, _ in tasks:
            if cells is not None and (model.name, task.id) not in cells:
                continue
            s.add(t.RunPartition(run_id=run.id, model=model.name, task_id=task.id, task_version=version,
                                 model_key=model.key, task_key=task.slug, status="pending",
                                 planned=counts[task.id], completed=0, failed=0, input_tokens=0,
                                 output_tokens=0, cached=0, model_fingerprint=model.fingerprint,
                                 chunks=[], updated_at=now()))
            total += counts[task.id]
    return total


def _first_with_key(catalog: Catalog, req: RunRequest, org_id: str | None, key: str) -> RunObject | None:
    with catalog.session() as s:
        first = s.scalar(select(t.Run).where(t.Run.org_id == (org_id or DEFAULT_ORG), t.Run.idempotency_key == key))
        if first is None:
            return None
        if first.models != list(req.models) or first.suite_id != req.suite_id:
            raise Conflict(f"Idempotency-Key {key!r} was used for another request")
        return run_object(s, first)


def create_run(catalog: Catalog, lake: Lake, body: dict[str, Any] | RunRequest, *, origin: str = "cli",
               status: str = "queued", org_id: str | None = None, team_id: str | None = None,
               created_by: str | None = None, idempotency_key: str | None = None,
               system_tags: list[str] | None = None, cells: set[tuple[str, str]] | None = None) -> RunObject:
    """Validate and record a run with its planned partitions; nothing is written when anything is wrong.
    `cells` ((model name, task id) pairs) keeps only those partitions of the models x tasks grid (a backfill
    of stale cells); unset, every pair is planned.
    Returns its `eval.run` object. With an idempotency key, a repeat of the same request in the same org
    returns the first run, also when the two race (the key is unique per org). Raises InvalidInput naming
    the field (request, models, suite version, tasks without inputs, graders), NotFound for an unknown
    suite (or one of another org), Conflict for an idempotency key used for another request."""
    req = body if isinstance(body, RunRequest) else RunRequest.parse(body)
    if idempotency_key is not None:
        first = _first_with_key(catalog, req, org_id, idempotency_key)
        if first is not None:
            return first
    try:
        return _record_run(catalog, lake, req, origin=origin, status=status, org_id=org_id, team_id=team_id,
                           created_by=created_by, idempotency_key=idempotency_key, system_tags=system_tags,
                           cells=cells)
    except IntegrityError:
        if idempotency_key is None:
            raise
        first = _first_with_key(catalog, req, org_id, idempotency_key)  # created meanwhile under the same key
        if first is None:
            raise
        return first


def _record_run(catalog: Catalog, lake: Lake, req: RunRequest, *, origin: str, status: str, org_id: str | None,
                team_id: str | None, created_by: str | None, idempotency_key: str | None,
                system_tags: list[str] | None, cells: set[tuple[str, str]] | None = None) -> RunObject:
    with catalog.session() as s:
        models, sv, tasks = _resolve(s, req, org_id)
        run = t.Run(id=ids.new_id("run"), name=req.name, description=req.description, suite_id=sv.suite_id,
                    suite_version=sv.version, suite_version_id=sv.id, status=status, origin=origin,
                    models=list(req.models), task_ids=req.task_ids, judge_model=req.judge_model,
                    embedding_model=req.embedding_model, generation=req.generation.normalised(),
                    settings=req.settings(), metadata_=req.metadata, request_total=0, artifact_file_ids=[],
                    created_at=now(), created_ns=time.time_ns(),
                    started_at=now() if status == "in_progress" else None, org_id=org_id or DEFAULT_ORG,
                    team_id=team_id or DEFAULT_TEAM, created_by=created_by, idempotency_key=idempotency_key,
                    system_tags=list(system_tags or []))
        run.eval_type, run.eval_mode = eval_kind([task.eval_mode for task, _, _ in tasks])
        _index_for_search(run)
        s.add(run)
        s.flush()
        run.request_total = _plan_partitions(s, lake, run, models, tasks, cells)
        return run_object(s, run)


def ensure_backfill_run(catalog: Catalog, lake: Lake, origin: str, partition_keys: list[tuple[str, str]]
                        ) -> str:
    """The eval run that a Dagster run launched without one (a UI backfill) records its work under:
    the latest suite version holding the tasks, the default generation settings. One per backfill
    (`origin`); `partition_keys` are (model key, task key) pairs. Returns the run's id. Raises NotFound
    for an unknown model or task key, InvalidInput when no suite version holds all the tasks."""
    model_keys = list(dict.fromkeys(m for m, _ in partition_keys))
    task_keys = list(dict.fromkeys(tk for _, tk in partition_keys))
    models = [model_by_key(catalog, k) for k in model_keys]
    with catalog.session() as s:
        tasks = {tk: s.scalar(select(t.Task).where(t.Task.slug == tk)) for tk in task_keys}
        missing = [tk for tk, task in tasks.items() if task is None]
        if missing:
            raise NotFound("task partition", ", ".join(missing))
        task_ids = [cast(t.Task, tasks[tk]).id for tk in task_keys]  # none is missing: checked above
        sv = s.scalar(select(t.SuiteVersion)
                      .join(t.SuiteVersionTask, t.SuiteVersionTask.suite_version_id == t.SuiteVersion.id)
                      .where(t.SuiteVersionTask.task_id.in_(task_ids)).group_by(t.SuiteVersion.id)
                      .having(func.count() == len(task_ids))
                      .order_by(t.SuiteVersion.created_at.desc(), t.SuiteVersion.version.desc()).limit(1))
        if sv is None:
            raise InvalidInput("partition_keys", "no suite version holds all of these tasks")
        suite_id, version = sv.suite_id, sv.version
    run_id = run_for_origin(catalog, origin)
    if run_id is None:
        return create_run(catalog, lake, {
            "suite_id": suite_id, "suite_version": version, "models": [m.name for m in models],
            "task_ids": task_ids, "name": f"Dagster backfill {origin.split(':', 1)[-1]}"},
            origin=origin, status="in_progress")["id"]
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        known = {(p.model_key, p.task_key) for p in
                 s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id))}
        new_pairs = [(m, tk) for m, tk in partition_keys if (m, tk) not in known]
        if new_pairs:  # a multi-run backfill: later Dagster runs add their own partitions
            assert run is not None  # run_for_origin found it above
            by_key = {m.key: m for m in models}
            rows = s.execute(select(t.Task, t.SuiteVersionTask.task_version, t.File.path)
                             .join(t.SuiteVersionTask, t.SuiteVersionTask.task_id == t.Task.id)
                             .join(t.TaskVersion, (t.TaskVersion.task_id == t.Task.id)
                                   & (t.TaskVersion.version == t.SuiteVersionTask.task_version))
                             .join(t.File, t.File.id == t.TaskVersion.inputs_file_id)
                             .where(t.SuiteVersionTask.suite_version_id == run.suite_version_id)).all()
            by_slug = {r[0].slug: r for r in rows}
            for m, tk in new_pairs:
                run.request_total += _plan_partitions(s, lake, run, [by_key[m]], [by_slug[tk]])
            run.models = list(dict.fromkeys([*run.models, *(by_key[m].name for m, _ in new_pairs)]))
            run.task_ids = list(dict.fromkeys([*(run.task_ids or []), *(by_slug[tk][0].id for _, tk in new_pairs)]))
        return run_id

