"""A run's lifecycle in the catalog: queued -> in_progress -> finalizing -> completed, or failed, or
cancelling -> cancelled; and its partitions' (pending -> running -> done, failed or cancelled), with the
chunks each has written. Updates that two processes may race on are single conditional statements."""
from __future__ import annotations

from typing import Any, cast

from pydantic import Field
from sqlalchemy import CursorResult, Table, func, select, update

from eval_pipeline.errors import Conflict, NotFound
from eval_pipeline.runs.records import TERMINAL, RunObject, _index_for_search, get_run, run_object, run_row
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.lake import Lake
from eval_pipeline.validation import Strict, parse_model


def mark_started(catalog: Catalog, run_id: str) -> bool:
    """queued -> in_progress (the sensor, --wait or the server's worker has handed the run to Dagster);
    one conditional update, so of two takers only one gets True."""
    with catalog.session() as s:
        taken = s.execute(update(t.Run).where(t.Run.id == run_id, t.Run.status == "queued")
                          .values(status="in_progress", started_at=func.coalesce(t.Run.started_at, now())))
        # an UPDATE's result is a CursorResult (with rowcount); Session.execute's overloads say only Result
        return cast(CursorResult[Any], taken).rowcount == 1


class RunUpdate(Strict):
    """The changes of an update-run request: name, description, system or user tags; None keeps the value."""

    name: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = Field(None, max_length=10000)
    system_tags: list[str] | None = Field(None, max_length=100)
    user_tags: list[str] | None = Field(None, max_length=100)


def update_run(catalog: Catalog, run_id: str, changes: dict[str, Any], *, org_id: str | None = None
               ) -> RunObject:
    """Rename, describe or tag a run (any state); fields left out keep their values. Returns the
    `eval.run` object. Raises InvalidInput naming the field, NotFound (also for a run of another org)."""
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


def delete_run(catalog: Catalog, lake: Lake, run_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """Delete a finished run: its catalog rows (partitions, exports, human grades) and its lake files
    (generations, grades, metrics, reports). Returns MKA1's `eval.run.deleted` {id, object, deleted}.
    Raises NotFound, Conflict for a run still working (it must be cancelled first)."""
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
            # a mapped class's __table__ is typed FromClause; these classes are mapped to Tables
            s.execute(cast(Table, model.__table__).delete().where(model.run_id == run_id))
        s.execute(cast(Table, t.File.__table__).delete().where(t.File.id.in_(report_ids)))
        s.delete(s.get(t.Run, run_id))
    return {"id": run_id, "object": "eval.run.deleted", "deleted": True}


def retry_run(catalog: Catalog, run_id: str, *, org_id: str | None = None) -> RunObject:
    """A failed run queued again for the sensor: chunks already written are kept, the rest is generated.
    Returns the `eval.run` object. Raises NotFound, Conflict unless the run failed."""
    with catalog.session() as s:
        run = run_row(s, run_id, org_id)
        if run.status != "failed":
            raise Conflict(f"run {run_id} is {run.status}; only a failed run is retried")
    resume_run(catalog, run_id)
    requeue(catalog, run_id)
    return get_run(catalog, run_id)


def cancel_run(catalog: Catalog, run_id: str, *, org_id: str | None = None) -> RunObject:
    """Stop starting work: a queued run is cancelled at once; a running one is `cancelling` until its
    partitions have stopped (each checks between chunks). Returns the `eval.run` object. Raises NotFound,
    Conflict for a run that is completed, failed or cancelled already."""
    with catalog.session() as s:
        run = run_row(s, run_id, org_id)
        if run.status in TERMINAL:
            raise Conflict(f"run {run_id} is {run.status} already")
        run.status = "cancelling" if run.status != "queued" else "cancelled"
    settle_cancel(catalog, run_id)
    return get_run(catalog, run_id)


def settle_cancel(catalog: Catalog, run_id: str) -> None:
    """cancelling -> cancelled once no partition of the run is running (its pending ones become cancelled).
    Raises NotFound for an unknown run."""
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
    """Claim a partition for execution (running, under `dagster_run_id`; a queued run becomes in_progress)
    and return its row (detached); None when the run no longer wants work (cancelled, failed...). Raises
    NotFound for an unknown run or partition."""
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
    """Whether the run is still in_progress (a partition checks this between chunks). Raises NotFound."""
    with catalog.session() as s:
        return run_row(s, run_id).status == "in_progress"


def record_chunk(catalog: Catalog, run_id: str, model: str, task_id: str, chunk: dict[str, Any]) -> None:
    """Add a written chunk's stats ({index, path, completed, failed, input_tokens, output_tokens,
    cached_tokens...}) to its partition, which must exist (idempotent: chunks are keyed by index)."""
    with catalog.session() as s:
        part = s.get(t.RunPartition, (run_id, model, task_id), with_for_update=True)
        assert part is not None  # a partition start_partition claimed
        chunks = {c["index"]: c for c in part.chunks}
        chunks[chunk["index"]] = chunk
        set_chunks(part, [chunks[i] for i in sorted(chunks)])


def set_chunks(part: t.RunPartition, chunks: list[dict[str, Any]]) -> None:
    """Set a partition's chunk list and the counts summed from it (completed, failed, input_tokens,
    output_tokens, and cached from the chunks' cached_tokens)."""
    part.chunks = chunks
    for column, key in (("completed", "completed"), ("failed", "failed"), ("input_tokens", "input_tokens"),
                        ("output_tokens", "output_tokens"), ("cached", "cached_tokens")):
        setattr(part, column, sum(c[key] for c in chunks))
    part.updated_at = now()


def set_partition_engine(catalog: Catalog, run_id: str, model: str, task_id: str, engine: dict[str, Any]) -> None:
    """Record what answered a partition, which must exist (backend, resolved dtype, max_model_len, tokenizer)."""
    with catalog.session() as s:
        cast(t.RunPartition, s.get(t.RunPartition, (run_id, model, task_id))).engine = dict(engine)


def add_partition_cost(catalog: Catalog, run_id: str, model: str, task_id: str, *, engine_seconds: float,
                       gpu_seconds: float, wall_seconds: float) -> None:
    """Add one execution's cost (seconds) to a partition, which must exist: a resume adds its own."""
    with catalog.session() as s:
        s.execute(update(t.RunPartition).where(
            t.RunPartition.run_id == run_id, t.RunPartition.model == model, t.RunPartition.task_id == task_id)
            .values(engine_seconds=t.RunPartition.engine_seconds + engine_seconds,
                    gpu_seconds=t.RunPartition.gpu_seconds + gpu_seconds,
                    wall_seconds=t.RunPartition.wall_seconds + wall_seconds))


def set_partition_grading(catalog: Catalog, run_id: str, model: str, task_id: str,
                          grading: dict[str, Any]) -> None:
    """Record how a partition's task was graded, {status, reason} (scoring/gradability.py); the partition
    must exist."""
    with catalog.session() as s:
        cast(t.RunPartition, s.get(t.RunPartition, (run_id, model, task_id))).grading = dict(grading)


def finish_partition(catalog: Catalog, run_id: str, model: str, task_id: str, status: str = "done") -> None:
    """Mark a partition done (or cancelled). The run itself completes in complete_if_done, once the
    Dagster run holding its last partition has passed its blocking checks too. The partition must exist."""
    with catalog.session() as s:
        part = s.get(t.RunPartition, (run_id, model, task_id))
        assert part is not None  # a partition start_partition claimed
        part.status, part.updated_at = status, now()
    settle_cancel(catalog, run_id)


def fail_run(catalog: Catalog, run_id: str, code: str, message: str, *, model: str | None = None,
             task: str | None = None) -> bool:
    """Record a failure as the run's `error` {code, message (first 2000 characters), model, task} unless
    the run has stopped already (cancelled, completed or failed); whether it was recorded. Raises NotFound."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        if run.status not in ("queued", "in_progress", "finalizing"):
            return False
        run.status, run.failed_at = "failed", now()
        run.error = {"code": code, "message": message[:2000], "model": model, "task": task}
        return True


def fail_partition(catalog: Catalog, run_id: str, model: str, task_id: str, code: str, message: str) -> None:
    """Mark a partition failed and its run too (see fail_run; `task` named by the task's name), then let a
    cancel settle. Raises NotFound for an unknown run."""
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
    them back to pending, so that a cancel can settle and a resume picks them up. Returns how many."""
    with catalog.session() as s:
        released = cast(CursorResult[Any], s.execute(update(t.RunPartition).where(
            t.RunPartition.run_id == run_id, t.RunPartition.dagster_run_id == dagster_run_id,
            t.RunPartition.status == "running").values(status="pending", updated_at=now()))).rowcount
    settle_cancel(catalog, run_id)
    return released


def resume_run(catalog: Catalog, run_id: str) -> RunObject:
    """Take a failed or interrupted run up again (in_progress): unfinished partitions go back to pending;
    the chunks they wrote already are kept and skipped. Returns the `eval.run` object. Raises NotFound,
    Conflict for a run that is completed, cancelled or cancelling."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        if run.status in ("completed", "cancelled", "cancelling"):
            raise Conflict(f"run {run_id} is {run.status}; only failed or unfinished runs resume")
        s.execute(update(t.RunPartition).where(t.RunPartition.run_id == run_id,
                                               t.RunPartition.status != "done").values(status="pending"))
        run.status, run.error, run.failed_at = "in_progress", None, None
        run.started_at = run.started_at or now()
        return run_object(s, run)


def requeue(catalog: Catalog, run_id: str) -> None:
    """Hand an in_progress run back to the sensor (after resume_run, without --wait), counting an attempt;
    a run in another state is left as it is. Raises NotFound."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        if run.status == "in_progress":
            run.status = "queued"
            run.attempt += 1

