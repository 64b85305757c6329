"""Human grades for manual tasks (eval_type manual): submitted per sample, kept in the catalog (one
row per doc, resubmission replaces), published to the partition's `human.parquet` so metrics and
bundles read them like any grader's. A run with manual tasks stays in_progress until each of their
generated docs has a grade; the last one computes the partition's metrics and completes the run."""
from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.grading.generated_docs import generation_docs
from eval_pipeline.grading.grade_files import grades_path, grades_table
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.lake import Lake
from eval_pipeline.validation import Strict, parse_model

METRIC = "human_score"


class HumanGrade(Strict):
    """A person's grade of one generated sample, as submitted: the partition's model and task_id, the doc,
    a score from 0 to 1, an optional rationale and grader name."""

    model: str = Field(min_length=1)
    task_id: str = Field(min_length=1)
    doc_id: int = Field(ge=0)
    score: float = Field(ge=0, le=1)
    rationale: str | None = Field(None, max_length=10000)
    grader: str | None = Field(None, min_length=1, max_length=255)


def manual_partitions(s: Session, run_id: str) -> list[t.RunPartition]:
    """The run's partitions of manual tasks (eval_type manual), any status."""
    return list(s.scalars(select(t.RunPartition).join(t.Task, t.Task.id == t.RunPartition.task_id)
                          .where(t.RunPartition.run_id == run_id, t.Task.eval_type == "manual")))


def ungraded(catalog: Catalog, lake: Lake, run_id: str) -> list[dict[str, Any]]:
    """The generated docs of the run's finished manual partitions that have no human grade yet, with what to
    judge: {model, task_id, doc_id, prompt, prediction, reference}. Raises NotFound for an unknown run."""
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
    with catalog.session() as s:
        parts = [(p.model, p.task_id) for p in manual_partitions(s, run_id)]
        counts = dict(((m, tk), n) for m, tk, n in s.execute(
            select(t.HumanGrade.model, t.HumanGrade.task_id, func.count()).where(t.HumanGrade.run_id == run_id)
            .group_by(t.HumanGrade.model, t.HumanGrade.task_id)).all())
    return sum(max(0, len(generation_docs(catalog, lake, run_id, m, tk)) - counts.get((m, tk), 0))
               for m, tk in parts)


def submit_human_grade(catalog: Catalog, lake: Lake, run_id: str, body: object) -> dict[str, Any]:
    """Record a person's grade (a JSON object of HumanGrade's fields) of one generated sample of a manual task,
    replacing an earlier one, and publish the partition's `human.parquet` again. Returns MKA1's
    `eval.human_grade` with `remaining_in_task` (docs of the partition still without a grade). Raises
    InvalidInput naming the field (`body`, `doc_id` of no generated sample...), NotFound for the run or
    partition, Conflict for an automatic task or a partition whose generations are not done."""
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
        assert task is not None  # the partition's task (foreign key)
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
    return {"object": "eval.human_grade", "run_id": run_id, "model": g.model, "task_id": g.task_id,
            "doc_id": g.doc_id, "score": g.score, "rationale": g.rationale, "grader": g.grader,
            "remaining_in_task": remaining}
