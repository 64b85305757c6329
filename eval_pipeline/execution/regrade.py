"""Grading a completed run again with another judge, rubric or embedding model: new grade files beside
the old ones, each partition's metrics and the run's metrics object recomputed, nothing regenerated."""
from __future__ import annotations

from sqlalchemy import select

from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.grading.embedding import embedding_partition
from eval_pipeline.grading.grade_files import rubric_text
from eval_pipeline.grading.judge import judge_partition
from eval_pipeline.results.metrics import refresh_run_metrics, write_partition_metrics
from eval_pipeline.runs import get_run
from eval_pipeline.runs.creation import check_graders
from eval_pipeline.runs.records import RunObject
from eval_pipeline.runs.request import RunRequest
from eval_pipeline.runs.staleness import grading_settings
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake
from eval_pipeline.validation import parse_model


def _record_grading_settings(catalog: Catalog, run_id: str, model: str, task_id: str) -> None:
    """The partition's recorded grading settings (for staleness) updated to the judge it has now."""
    with catalog.session() as s:
        run, part = s.get_one(t.Run, run_id), s.get_one(t.RunPartition, (run_id, model, task_id))
        if part.grading is not None and "settings" in part.grading:
            part.grading = {**part.grading, "settings": grading_settings(
                s.get_one(t.Task, task_id), run.judge_model, rubric_text(run.settings or {}))}


def regrade_run(catalog: Catalog, lake: Lake, run_id: str, *, judge_model: str | None = None,
                judge_rubric: str | None = None, embedding_model: str | None = None) -> RunObject:
    """Grade a completed run again with the judge, rubric or embedding model given (the others kept).
    Returns the run. Raises NotFound, Conflict unless completed, InvalidInput when nothing is named or a
    model does not resolve to a grader."""
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
        parts = [(p.model, p.task_id) for p in
                 s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id))]
        check_graders(s, req, [s.get_one(t.Task, task_id) for _, task_id in parts])
        run.judge_model, run.embedding_model = req.judge_model, req.embedding_model
        run.settings = {**run.settings, "judge_rubric": req.judge_rubric}
    for model, task_id in parts:
        judge_partition(catalog, lake, run_id, model, task_id)
        embedding_partition(catalog, lake, run_id, model, task_id)
        write_partition_metrics(catalog, lake, run_id, model, task_id)
        _record_grading_settings(catalog, run_id, model, task_id)
    refresh_run_metrics(catalog, lake, run_id)
    return get_run(catalog, run_id)
