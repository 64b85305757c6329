"""Grading actions: a person's grade of one sample, and grading a completed run again with another judge,
rubric or embedding model (new grade files beside the old ones, metrics recomputed, nothing regenerated)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.execution.finish import finish_human_grading
from eval_pipeline.grading.embedding import embedding_partition
from eval_pipeline.grading.human import submit_human_grade
from eval_pipeline.grading.judge import judge_partition
from eval_pipeline.results.metrics import refresh_run_metrics, write_partition_metrics
from eval_pipeline.runs import get_run
from eval_pipeline.runs.creation import check_graders
from eval_pipeline.runs.records import RunObject
from eval_pipeline.runs.request import RunRequest
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.runtime import Runtime
from eval_pipeline.validation import parse_model


def grade_sample(rt: Runtime, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Record a person's grade `{model, task_id, doc_id, score 0-1, rationale?, grader?}` of one generated
    sample of a manual task (a resubmission replaces it). The last missing grade of a partition computes
    its metrics and may complete the run; a later one refreshes a completed run's metrics. Returns
    `eval.human_grade` with `remaining_in_task`. Raises InvalidInput naming the field, NotFound, Conflict
    (an automatic task, or generations not done)."""
    grade = submit_human_grade(rt.catalog, rt.lake, run_id, body)
    if grade["remaining_in_task"] == 0:
        finish_human_grading(rt.catalog, rt.lake, run_id, grade["model"], grade["task_id"])
    return grade


def regrade_run(rt: Runtime, run_id: str, *, judge_model: str | None = None, judge_rubric: str | None = None,
                embedding_model: str | None = None) -> RunObject:
    """Grade a completed run again with the judge, rubric or embedding model given (the others kept).
    Returns the run. Raises NotFound, Conflict unless completed, InvalidInput when nothing is named or a
    model does not resolve to a grader."""
    catalog, lake = rt.catalog, rt.lake
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        if run is None:
            raise NotFound("run", run_id)
        if run.status != "completed":
            raise Conflict(f"run {run_id} is {run.status}; only a completed run is graded again")
        changes = {k: v for k, v in (("judge_model", judge_model), ("judge_rubric", judge_rubric),
                                     ("embedding_model", embedding_model)) if v is not None}
        if not changes:
            raise InvalidInput("judge_model", "name a judge model, a rubric or an embedding model to grade with")
        req = parse_model(RunRequest, {"suite_id": run.suite_id, "models": run.models,
                                       "judge_model": judge_model or run.judge_model,
                                       "judge_rubric": judge_rubric or run.settings.get("judge_rubric"),
                                       "embedding_model": embedding_model or run.embedding_model})
        tasks = [s.get_one(t.Task, p.task_id) for p in s.scalars(select(t.RunPartition)
                                                             .where(t.RunPartition.run_id == run_id))]
        check_graders(s, req, tasks)
        run.judge_model, run.embedding_model = req.judge_model, req.embedding_model
        run.settings = {**run.settings, "judge_rubric": req.judge_rubric}
        parts = [(p.model, p.task_id) for p in
                 s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id))]
    for model, task_id in parts:
        judge_partition(catalog, lake, run_id, model, task_id)
        embedding_partition(catalog, lake, run_id, model, task_id)
        write_partition_metrics(catalog, lake, run_id, model, task_id)
    refresh_run_metrics(catalog, lake, run_id)
    return get_run(catalog, run_id)
