"""Grading actions: a person's grade of one sample (the last one of a partition finishes it), and grading
a completed run again with another judge, rubric or embedding model."""
from __future__ import annotations

from typing import Any

from eval_pipeline.execution.finish import finish_human_grading
from eval_pipeline.execution.regrade import regrade_run as _regrade_run
from eval_pipeline.grading.human import submit_human_grade
from eval_pipeline.runs.records import RunObject
from eval_pipeline.stores.runtime import Runtime


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
    """Grade a completed run again (see execution.regrade.regrade_run). Returns the run. Raises NotFound,
    Conflict unless completed, InvalidInput when nothing is named or a model does not resolve to a grader."""
    return _regrade_run(rt.catalog, rt.lake, run_id, judge_model=judge_model, judge_rubric=judge_rubric,
                        embedding_model=embedding_model)
