"""Human grades for manual tasks (eval_type manual): submitted per sample, kept in the catalog (one
row per doc, resubmission replaces), published to the partition's `human.parquet` so metrics and
bundles read them like any grader's. A run with manual tasks stays in_progress until each of their
generated docs has a grade; the last one computes the partition's metrics and completes the run."""
from __future__ import annotations

from pydantic import Field
from sqlalchemy import func, select

from eval_pipeline.catalog import Catalog
from eval_pipeline.catalog import tables as t
from eval_pipeline.catalog.store import now
from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.lake import Lake
from eval_pipeline.validation import Strict, parse_model

METRIC = "human_score"


class HumanGrade(Strict):
    model: str = Field(min_length=1)
    task_id: str = Field(min_length=1)
    doc_id: int = Field(ge=0)
    score: float = Field(ge=0, le=1)
    rationale: str | None = Field(None, max_length=10000)
    grader: str | None = Field(None, min_length=1, max_length=255)


def manual_partitions(s, run_id: str) -> list[t.RunPartition]:
    return list(s.scalars(select(t.RunPartition).join(t.Task, t.Task.id == t.RunPartition.task_id)
                          .where(t.RunPartition.run_id == run_id, t.Task.eval_type == "manual")))


def ungraded(catalog: Catalog, lake: Lake, run_id: str) -> list[dict]:
    """The generated docs of the run's manual tasks that have no human grade yet, with what to judge."""
    from eval_pipeline.grading.partition import generation_docs

    with catalog.session() as s:
        if s.get(t.Run, run_id) is None:
            raise NotFound("run", run_id)
        parts = [(p.model, p.task_id, p.status) for p in manual_partitions(s, run_id)]
        graded = {(g.model, g.task_id, g.doc_id) for g in s.scalars(
            select(t.HumanGrade).where(t.HumanGrade.run_id == run_id))}
    out = []
    for model, task_id, status in parts:
        if status != "done":
            continue
        for d in generation_docs(catalog, lake, run_id, model, task_id):
            if (model, task_id, d.doc_id) not in graded:
                out.append({"model": model, "task_id": task_id, "doc_id": d.doc_id, "prompt": d.prompt,
                            "prediction": d.prediction, "reference": d.reference})
    return out


def awaiting_human_grades(catalog: Catalog, lake: Lake, run_id: str) -> int:
    """How many docs of finished manual partitions still need a human grade."""
    from eval_pipeline.grading.partition import generation_docs

    with catalog.session() as s:
        parts = [(p.model, p.task_id) for p in manual_partitions(s, run_id)]
        counts = dict(((m, tk), n) for m, tk, n in s.execute(
            select(t.HumanGrade.model, t.HumanGrade.task_id, func.count()).where(t.HumanGrade.run_id == run_id)
            .group_by(t.HumanGrade.model, t.HumanGrade.task_id)).all())
    return sum(max(0, len(generation_docs(catalog, lake, run_id, m, tk)) - counts.get((m, tk), 0))
               for m, tk in parts)


def submit_human_grade(catalog: Catalog, lake: Lake, run_id: str, body: dict) -> dict:
    from eval_pipeline.grading.partition import generation_docs, grades_path, grades_table

    g = parse_model(HumanGrade, body) if isinstance(body, dict) else None
    if g is None:
        raise InvalidInput("body", "must be a JSON object")
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        if run is None:
            raise NotFound("run", run_id)
        part = s.get(t.RunPartition, (run_id, g.model, g.task_id))
        if part is None:
            raise NotFound("run partition", f"{run_id}/{g.model}/{g.task_id}")
        task = s.get(t.Task, g.task_id)
        if task.eval_type != "manual":
            raise Conflict(f"task {task.name} is graded automatically (eval_mode {task.eval_mode}), not by people")
        if run.status not in ("in_progress", "completed") or part.status != "done":
            raise Conflict(f"run {run_id} is {run.status} and this partition is {part.status}: "
                           "grades are taken once its generations are done")
        keys = (part.model_key, part.task_key)
    docs = {d.doc_id for d in generation_docs(catalog, lake, run_id, g.model, g.task_id) if d.kind != "loglikelihood"}
    if g.doc_id not in docs:
        raise InvalidInput("doc_id", f"{g.doc_id} is not a generated sample of {g.model} on this task")
    with catalog.session() as s:
        row = s.get(t.HumanGrade, (run_id, g.model, g.task_id, g.doc_id))
        if row is None:
            row = t.HumanGrade(run_id=run_id, model=g.model, task_id=g.task_id, doc_id=g.doc_id, created_at=now())
            s.add(row)
        row.score, row.rationale, row.grader, row.updated_at = g.score, g.rationale, g.grader, now()
        s.flush()
        rows = list(s.scalars(select(t.HumanGrade).where(t.HumanGrade.run_id == run_id, t.HumanGrade.model == g.model,
                                                         t.HumanGrade.task_id == g.task_id)
                              .order_by(t.HumanGrade.doc_id)))
        table = grades_table(run_id, g.model, g.task_id,
                             [(r.doc_id, "none", METRIC, r.score, f"human:{r.grader or 'anonymous'}", None, None)
                              for r in rows], rationale=[r.rationale for r in rows])
    lake.write_table(grades_path(run_id, *keys, grader="human"), table)
    remaining = len(docs) - len(rows)
    if remaining == 0:
        _finish_partition_grades(catalog, lake, run_id, g.model, g.task_id)
    return {"object": "eval.human_grade", "run_id": run_id, "model": g.model, "task_id": g.task_id,
            "doc_id": g.doc_id, "score": g.score, "rationale": g.rationale, "grader": g.grader,
            "remaining_in_task": remaining}


def _finish_partition_grades(catalog: Catalog, lake: Lake, run_id: str, model: str, task_id: str) -> None:
    """Every doc graded: the partition's metrics include the human scores; the run may complete."""
    from eval_pipeline.metrics import refresh_run_metrics, write_partition_metrics
    from eval_pipeline.runs import complete_if_done

    write_partition_metrics(catalog, lake, run_id, model, task_id)
    if not complete_if_done(catalog, lake, run_id):
        with catalog.session() as s:
            completed = s.get(t.Run, run_id).status == "completed"
        if completed:  # a completed run regraded by people: refresh its metrics object
            refresh_run_metrics(catalog, lake, run_id)
