"""Eval runs: creation from the brief's request, the lifecycle, and live counts.

queued -> in_progress -> finalizing -> completed, or failed, or cancelling -> cancelled. A run is planned
as (model, task) partitions when it is created; their rows carry the progress that request_counts and
token totals are summed from, so concurrent partitions never contend for one counter.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

from pydantic import Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from eval_pipeline import ids
from eval_pipeline.catalog import Catalog
from eval_pipeline.catalog import tables as t
from eval_pipeline.catalog.store import now
from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.generation.requests import count_requests, task_repeats
from eval_pipeline.lake import Lake
from eval_pipeline.metrics import metrics_path, not_graded, run_metrics_object
from eval_pipeline.model_registry import Model, model_by_key, resolve_in
from eval_pipeline.run_request import RunRequest
from eval_pipeline.validation import Strict, parse_model
from eval_pipeline.suites import active_version_row

TERMINAL = ("completed", "failed", "cancelled")
DEFAULT_ORG, DEFAULT_TEAM = "org_default", "team_default"  # runs made without an API key (CLI, Dagster)

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


def _runnable_tasks(s: Session, sv: t.SuiteVersion, task_ids: list[str] | None) -> list[tuple]:
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


def _index_for_search(run: t.Run) -> None:
    run.search_text = f"{(run.name or '').lower()} {run.id.lower()}"
    run.model_list = "|" + "|".join(run.models) + "|"


def eval_kind(task_modes: list[str | None]) -> tuple[str, str]:
    """(eval_type, eval_mode) of a run from its tasks' modes: manual if one task is; else the union of
    rule and model."""
    modes = {m for mode in task_modes for m in (mode or "rule").split(",")}
    if "manual" in modes:
        return "manual", "manual"
    return "auto", ",".join(m for m in ("rule", "model") if m in modes) or "rule"


def _check_graders(s: Session, req: RunRequest, tasks: list[t.Task]) -> None:
    """A judged task needs a judge model; judge and embedding models must resolve."""
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


def _plan_partitions(s: Session, lake: Lake, run: t.Run, models: list[Model], tasks: list[tuple]) -> int:
    total = 0
    max_samples = run.settings.get("max_samples_per_task")
    counts = {task.id: count_requests(lake, path, max_samples, task_repeats(task.grading))
              for task, _, path in tasks}
    for model in models:
        for task, version, _ in tasks:
            s.add(t.RunPartition(run_id=run.id, model=model.name, task_id=task.id, task_version=version,
                                 model_key=model.key, task_key=task.slug, status="pending",
                                 planned=counts[task.id], completed=0, failed=0, input_tokens=0,
                                 output_tokens=0, cached=0, model_fingerprint=model.fingerprint,
                                 chunks=[], updated_at=now()))
            total += counts[task.id]
    return total


def create_run(catalog: Catalog, lake: Lake, body: dict | RunRequest, *, origin: str = "cli",
               status: str = "queued", org_id: str | None = None, team_id: str | None = None,
               created_by: str | None = None, idempotency_key: str | None = None) -> dict:
    """Validate and record a run with its planned partitions; nothing is written when anything is wrong.
    With an idempotency key, a repeat of the same request in the same org returns the first run."""
    req = body if isinstance(body, RunRequest) else RunRequest.parse(body)
    if idempotency_key is not None:
        with catalog.session() as s:
            first = s.scalar(select(t.Run).where(t.Run.org_id == (org_id or DEFAULT_ORG),
                                                 t.Run.idempotency_key == idempotency_key))
            if first is not None:
                if first.models != list(req.models) or first.suite_id != req.suite_id:
                    raise Conflict(f"Idempotency-Key {idempotency_key!r} was used for another request")
                return run_object(s, first)
    with catalog.session() as s:
        models = [resolve_in(s, name, f"models[{i}]") for i, name in enumerate(req.models)]
        sv = _suite_version(s, req.suite_id, req.suite_version, org_id)
        tasks = _runnable_tasks(s, sv, req.task_ids)
        _check_graders(s, req, [task for task, _, _ in tasks])
        run = t.Run(id=ids.new_id("run"), name=req.name, description=req.description, suite_id=sv.suite_id,
                    suite_version=sv.version, suite_version_id=sv.id, status=status, origin=origin,
                    models=list(req.models), task_ids=req.task_ids, judge_model=req.judge_model,
                    embedding_model=req.embedding_model, generation=req.generation.normalised(),
                    settings=req.settings(), metadata_=req.metadata, request_total=0, artifact_file_ids=[],
                    created_at=now(), created_ns=time.time_ns(),
                    started_at=now() if status == "in_progress" else None, org_id=org_id or DEFAULT_ORG,
                    team_id=team_id or DEFAULT_TEAM, created_by=created_by, idempotency_key=idempotency_key)
        run.eval_type, run.eval_mode = eval_kind([task.eval_mode for task, _, _ in tasks])
        _index_for_search(run)
        s.add(run)
        s.flush()
        run.request_total = _plan_partitions(s, lake, run, models, tasks)
        return run_object(s, run)


def _totals(s: Session, run_id: str) -> dict:
    row = s.execute(select(func.coalesce(func.sum(t.RunPartition.completed), 0),
                           func.coalesce(func.sum(t.RunPartition.failed), 0),
                           func.coalesce(func.sum(t.RunPartition.input_tokens), 0),
                           func.coalesce(func.sum(t.RunPartition.output_tokens), 0),
                           func.coalesce(func.sum(t.RunPartition.cached), 0))
                    .where(t.RunPartition.run_id == run_id)).one()
    return {"completed": int(row[0]), "failed": int(row[1]), "input": int(row[2]), "output": int(row[3]),
            "cached": int(row[4])}


def _engines_and_task_errors(s: Session, run_id: str) -> dict:
    """`engines`: per model, what answered (backend, resolved dtype, max_model_len, tokenizer);
    `task_errors`: per (model, task) a task no rule grades, with the reason (the run still completes)."""
    rows = s.execute(select(t.RunPartition.model, t.RunPartition.task_id, t.RunPartition.engine,
                            t.RunPartition.grading).where(t.RunPartition.run_id == run_id)).all()
    errors = not_graded(s, [SimpleNamespace(model=m, task_id=tid, grading=g) for m, tid, _, g in rows])
    return {"engines": {m: e for m, _, e, _ in rows if e},
            "task_errors": [{"model": e["model"], "task_id": e["task_id"], "task": e["task"], "code": e["status"],
                             "message": e["reason"]} for e in errors]}


def run_object(s: Session, run: t.Run, *, partitions: bool = False) -> dict:
    """The brief's `eval.run`, every field present."""
    totals = _totals(s, run.id)
    out = {
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
        **_engines_and_task_errors(s, run.id),
    }
    if partitions:
        out["partitions"] = [
            {"model": p.model, "task_id": p.task_id, "partition_key": f"{p.model_key}|{p.task_key}",
             "status": p.status, "planned": p.planned, "completed": p.completed, "failed": p.failed,
             "chunks": len(p.chunks), "engine": p.engine, "grading": p.grading}
            for p in s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run.id)
                               .order_by(t.RunPartition.model, t.RunPartition.task_key))]
    return out


def run_row(s: Session, run_id: str, org_id: str | None = None) -> t.Run:
    """The run, or NotFound, also when it belongs to another org than `org_id` (when given)."""
    run = s.get(t.Run, run_id)
    if run is None or (org_id is not None and run.org_id != org_id):
        raise NotFound("run", run_id)
    return run


def get_run(catalog: Catalog, run_id: str, *, partitions: bool = False, org_id: str | None = None) -> dict:
    with catalog.session() as s:
        return run_object(s, run_row(s, run_id, org_id), partitions=partitions)


def list_runs(catalog: Catalog, *, status: str | None = None, suite_id: str | None = None,
              limit: int = 20, after: str | None = None, org_id: str | None = None,
              suite_version: int | None = None, created_by: str | None = None) -> list[dict]:
    """Newest first; `after` is the id of the last run of the previous page. `org_id` limits to one org
    (the API always passes the caller's); `created_by` to one user's runs (owned_only)."""
    with catalog.session() as s:
        q = select(t.Run).order_by(t.Run.created_ns.desc(), t.Run.id.desc())
        if org_id is not None:
            q = q.where(t.Run.org_id == org_id)
        if suite_version is not None:
            q = q.where(t.Run.suite_version == suite_version)
        if created_by is not None:
            q = q.where(t.Run.created_by == created_by)
        if status:
            q = q.where(t.Run.status == status)
        if suite_id:
            q = q.where(t.Run.suite_id == suite_id)
        if after:
            anchor = run_row(s, after, org_id)
            q = q.where((t.Run.created_ns < anchor.created_ns)
                        | ((t.Run.created_ns == anchor.created_ns) & (t.Run.id < anchor.id)))
        return [run_object(s, r) for r in s.scalars(q.limit(limit))]


def queued_runs(catalog: Catalog) -> list[dict]:
    with catalog.session() as s:
        return [run_object(s, r) for r in s.scalars(select(t.Run).where(t.Run.status == "queued")
                                                    .order_by(t.Run.created_ns, t.Run.id))]


def run_partitions(catalog: Catalog, run_id: str, *, unfinished_only: bool = False) -> list[t.RunPartition]:
    with catalog.session() as s:
        q = select(t.RunPartition).where(t.RunPartition.run_id == run_id)
        if unfinished_only:
            q = q.where(t.RunPartition.status != "done")
        return list(s.scalars(q.order_by(t.RunPartition.model, t.RunPartition.task_key)))


def mark_started(catalog: Catalog, run_id: str) -> bool:
    """queued -> in_progress (the sensor, --wait or the server's worker has handed the run to Dagster);
    one conditional update, so of two takers only one gets True."""
    with catalog.session() as s:
        taken = s.execute(update(t.Run).where(t.Run.id == run_id, t.Run.status == "queued")
                          .values(status="in_progress", started_at=func.coalesce(t.Run.started_at, now())))
        return taken.rowcount == 1


class RunUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = Field(None, max_length=10000)
    system_tags: list[str] | None = Field(None, max_length=100)
    user_tags: list[str] | None = Field(None, max_length=100)


def update_run(catalog: Catalog, run_id: str, changes: dict, *, org_id: str | None = None) -> dict:
    """Rename, describe or tag a run (any state); fields left out keep their values."""
    upd = parse_model(RunUpdate, changes)
    with catalog.session() as s:
        run = run_row(s, run_id, org_id)
        for field in ("name", "description", "system_tags", "user_tags"):
            value = getattr(upd, field)
            if value is not None:
                setattr(run, field, value)
        _index_for_search(run)
        s.flush()
        return run_object(s, run)


def delete_run(catalog: Catalog, lake: Lake, run_id: str, *, org_id: str | None = None) -> dict:
    """Delete a finished run: its catalog rows (partitions, exports, human grades) and its lake files
    (generations, grades, metrics, reports). A run still working must be cancelled first."""
    with catalog.session() as s:
        run = run_row(s, run_id, org_id)
        if run.status not in TERMINAL:
            raise Conflict(f"run {run_id} is {run.status}: cancel it before deleting it")
        report_ids = list(run.artifact_file_ids or [])
    for prefix in ("generations", "grades", "metrics", "reports"):
        folder = f"{lake.root}/{prefix}/{run_id}"
        if lake.fs.exists(folder):
            lake.fs.rm(folder, recursive=True)
    with catalog.session() as s:
        for model in (t.HumanGrade, t.Export, t.RunPartition):
            s.execute(model.__table__.delete().where(model.run_id == run_id))
        s.execute(t.File.__table__.delete().where(t.File.id.in_(report_ids)))
        s.delete(s.get(t.Run, run_id))
    return {"id": run_id, "object": "eval.run.deleted", "deleted": True}


def retry_run(catalog: Catalog, run_id: str, *, org_id: str | None = None) -> dict:
    """A failed run queued again for the sensor: chunks already written are kept, the rest is generated."""
    with catalog.session() as s:
        run = run_row(s, run_id, org_id)
        if run.status != "failed":
            raise Conflict(f"run {run_id} is {run.status}; only a failed run is retried")
    resume_run(catalog, run_id)
    requeue(catalog, run_id)
    return get_run(catalog, run_id)


def run_artifacts(catalog: Catalog, run_id: str, *, org_id: str | None = None) -> dict:
    with catalog.session() as s:
        run = run_row(s, run_id, org_id)
        return {"object": "eval.artifacts", "run_id": run.id, "result_file_id": None, "samples_file_id": None,
                "artifact_file_ids": list(run.artifact_file_ids or [])}


def cancel_run(catalog: Catalog, run_id: str, *, org_id: str | None = None) -> dict:
    """Stop starting work: a queued run is cancelled at once; a running one is `cancelling` until its
    partitions have stopped (each checks between chunks)."""
    with catalog.session() as s:
        run = run_row(s, run_id, org_id)
        if run.status in TERMINAL:
            raise Conflict(f"run {run_id} is {run.status} already")
        run.status = "cancelling" if run.status != "queued" else "cancelled"
    settle_cancel(catalog, run_id)
    return get_run(catalog, run_id)


def settle_cancel(catalog: Catalog, run_id: str) -> None:
    """cancelling -> cancelled once no partition of the run is running."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        if run.status not in ("cancelling", "cancelled"):
            return
        running = s.scalar(select(func.count()).where(t.RunPartition.run_id == run_id,
                                                      t.RunPartition.status == "running"))
        if running:
            return
        s.execute(update(t.RunPartition).where(t.RunPartition.run_id == run_id,
                                               t.RunPartition.status == "pending").values(status="cancelled"))
        run.status, run.cancelled_at = "cancelled", run.cancelled_at or now()


def start_partition(catalog: Catalog, run_id: str, model: str, task_id: str,
                    dagster_run_id: str | None) -> t.RunPartition | None:
    """Claim a partition for execution; None when the run no longer wants work (cancelled, failed...)."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        part = s.get(t.RunPartition, (run_id, model, task_id))
        if part is None:
            raise NotFound("run partition", f"{run_id}/{model}/{task_id}")
        if run.status not in ("queued", "in_progress"):
            return None
        if run.status == "queued":
            run.status, run.started_at = "in_progress", run.started_at or now()
        part.status, part.dagster_run_id, part.updated_at = "running", dagster_run_id, now()
        return part


def still_wanted(catalog: Catalog, run_id: str) -> bool:
    with catalog.session() as s:
        return run_row(s, run_id).status == "in_progress"


def record_chunk(catalog: Catalog, run_id: str, model: str, task_id: str, chunk: dict) -> None:
    """Add a written chunk's stats to its partition (idempotent: chunks are keyed by index)."""
    with catalog.session() as s:
        part = s.get(t.RunPartition, (run_id, model, task_id), with_for_update=True)
        chunks = {c["index"]: c for c in part.chunks}
        chunks[chunk["index"]] = chunk
        set_chunks(part, [chunks[i] for i in sorted(chunks)])


def set_chunks(part: t.RunPartition, chunks: list[dict]) -> None:
    """A partition's chunk list and the counts summed from it."""
    part.chunks = chunks
    for column, key in (("completed", "completed"), ("failed", "failed"), ("input_tokens", "input_tokens"),
                        ("output_tokens", "output_tokens"), ("cached", "cached_tokens")):
        setattr(part, column, sum(c[key] for c in chunks))
    part.updated_at = now()


def run_attempt(catalog: Catalog, run_id: str) -> int:
    with catalog.session() as s:
        return s.scalar(select(t.Run.attempt).where(t.Run.id == run_id)) or 0


def partition_chunks(catalog: Catalog, run_id: str, model: str, task_id: str) -> list[dict]:
    with catalog.session() as s:
        part = s.get(t.RunPartition, (run_id, model, task_id))
        return list(part.chunks) if part else []


def set_partition_engine(catalog: Catalog, run_id: str, model: str, task_id: str, engine: dict) -> None:
    """Record what answered a partition (backend, resolved dtype, window, tokenizer)."""
    with catalog.session() as s:
        s.get(t.RunPartition, (run_id, model, task_id)).engine = dict(engine)


def set_partition_grading(catalog: Catalog, run_id: str, model: str, task_id: str, grading: dict) -> None:
    """Record how a partition's task was graded: {status, reason} (grading/gradability.py)."""
    with catalog.session() as s:
        s.get(t.RunPartition, (run_id, model, task_id)).grading = dict(grading)


def finish_partition(catalog: Catalog, run_id: str, model: str, task_id: str, status: str = "done") -> None:
    """Mark a partition done (or cancelled). The run itself completes in complete_if_done, once the
    Dagster run holding its last partition has passed its blocking checks too."""
    with catalog.session() as s:
        part = s.get(t.RunPartition, (run_id, model, task_id))
        part.status, part.updated_at = status, now()
    settle_cancel(catalog, run_id)


def complete_if_done(catalog: Catalog, lake: Lake, run_id: str) -> bool:
    """in_progress -> finalizing -> completed when every partition is done and every sample of a manual
    task has a human grade: finalizing gathers the partitions' metrics into the run's `metrics` object;
    the run's report (HTML with a chart) becomes its artifact."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)).all()
        if run.status != "in_progress" or any(p.status != "done" for p in parts):
            return False
        paths = [metrics_path(run_id, p.model_key, p.task_key) for p in parts]
    from eval_pipeline.grading.human import awaiting_human_grades

    if awaiting_human_grades(catalog, lake, run_id):  # manual tasks: the run waits for people
        return False
    with catalog.session() as s:
        run = run_row(s, run_id)
        if run.status != "in_progress":
            return False
        run.status = "finalizing"
    missing = [p for p in paths if not lake.exists(p)]
    with catalog.session() as s:
        run = run_row(s, run_id)
        if missing:  # the job ran without the metrics stage: nothing to finish with
            run.status = "failed"
            run.failed_at = now()
            run.error = {"code": "metrics_missing", "message": f"no metrics at {missing[0]}", "model": None,
                         "task": None}
            return False
        parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)).all()
        run.metrics = run_metrics_object(lake, paths, not_graded(s, parts))
        run.status, run.completed_at = "completed", now()
    from eval_pipeline.report import write_report

    write_report(catalog, lake, run_id)
    return True


def fail_run(catalog: Catalog, run_id: str, code: str, message: str, *, model: str | None = None,
             task: str | None = None) -> bool:
    """Record a failure unless the run has stopped already (cancelled, completed or failed)."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        if run.status not in ("queued", "in_progress", "finalizing"):
            return False
        run.status, run.failed_at = "failed", now()
        run.error = {"code": code, "message": message[:2000], "model": model, "task": task}
        return True


def fail_partition(catalog: Catalog, run_id: str, model: str, task_id: str, code: str, message: str) -> None:
    with catalog.session() as s:
        part = s.get(t.RunPartition, (run_id, model, task_id))
        task = s.get(t.Task, task_id)
        if part is not None:
            part.status, part.updated_at = "failed", now()
        task_name = task.name if task else task_id
    fail_run(catalog, run_id, code, message, model=model, task=task_name)
    settle_cancel(catalog, run_id)


def release_partitions(catalog: Catalog, run_id: str, dagster_run_id: str) -> int:
    """A Dagster run ended without finishing its partitions (its worker died, it was terminated): put
    them back to pending, so that a cancel can settle and a resume picks them up."""
    with catalog.session() as s:
        released = s.execute(update(t.RunPartition).where(
            t.RunPartition.run_id == run_id, t.RunPartition.dagster_run_id == dagster_run_id,
            t.RunPartition.status == "running").values(status="pending", updated_at=now())).rowcount
    settle_cancel(catalog, run_id)
    return released


def resume_run(catalog: Catalog, run_id: str) -> dict:
    """Take a failed or interrupted run up again: unfinished partitions go back to pending; the chunks
    they wrote already are kept and skipped."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        if run.status in ("completed", "cancelled", "cancelling"):
            raise Conflict(f"run {run_id} is {run.status}; only failed or unfinished runs resume")
        s.execute(update(t.RunPartition).where(t.RunPartition.run_id == run_id,
                                               t.RunPartition.status != "done").values(status="pending"))
        run.status, run.error, run.failed_at = "in_progress", None, None
        run.started_at = run.started_at or now()
        return run_object(s, run)


def run_for_origin(catalog: Catalog, origin: str) -> str | None:
    with catalog.session() as s:
        return s.scalar(select(t.Run.id).where(t.Run.origin == origin).limit(1))


def ensure_backfill_run(catalog: Catalog, lake: Lake, origin: str, partition_keys: list[tuple[str, str]]
                        ) -> str:
    """The eval run that a Dagster run launched without one (a UI backfill) records its work under:
    the latest suite version holding the tasks, the default generation settings. One per backfill."""
    model_keys = list(dict.fromkeys(m for m, _ in partition_keys))
    task_keys = list(dict.fromkeys(tk for _, tk in partition_keys))
    models = [model_by_key(catalog, k) for k in model_keys]
    with catalog.session() as s:
        tasks = {tk: s.scalar(select(t.Task).where(t.Task.slug == tk)) for tk in task_keys}
        missing = [tk for tk, task in tasks.items() if task is None]
        if missing:
            raise NotFound("task partition", ", ".join(missing))
        task_ids = [tasks[tk].id for tk in task_keys]
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


def partition_by_keys(catalog: Catalog, run_id: str, model_key: str, task_key: str) -> t.RunPartition:
    with catalog.session() as s:
        part = s.scalar(select(t.RunPartition).where(t.RunPartition.run_id == run_id,
                                                     t.RunPartition.model_key == model_key,
                                                     t.RunPartition.task_key == task_key))
        if part is None:
            raise NotFound("run partition", f"{run_id}/{model_key}|{task_key}")
        return part


def requeue(catalog: Catalog, run_id: str) -> None:
    """Hand an in_progress run back to the sensor (after resume_run, without --wait)."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        if run.status == "in_progress":
            run.status = "queued"
            run.attempt += 1
