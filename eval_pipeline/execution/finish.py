"""Finishing a run: once every partition is done (and every sample of a manual task has a person's
grade), the partitions' metrics become the run's `metrics` object and its report is written."""
from __future__ import annotations

from sqlalchemy import select

from eval_pipeline.grading.human import awaiting_human_grades
from eval_pipeline.results.metrics import metrics_path, refresh_run_metrics, run_metrics_object, write_partition_metrics
from eval_pipeline.results.report import write_report
from eval_pipeline.runs.records import not_graded, run_row
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.lake import Lake


def complete_if_done(catalog: Catalog, lake: Lake, run_id: str) -> bool:
    """in_progress -> finalizing -> completed when every partition is done and every sample of a manual
    task has a human grade: finalizing gathers the partitions' metrics into the run's `metrics` object;
    the run's report (HTML with a chart) becomes its artifact. Returns whether this call completed the run
    (False also when the metrics are missing: the run is failed then). Raises NotFound for an unknown run."""
    with catalog.session() as s:
        run = run_row(s, run_id)
        parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)).all()
        if run.status != "in_progress" or any(p.status != "done" for p in parts):
            return False
        paths = [metrics_path(run_id, p.model_key, p.task_key) for p in parts]
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
    write_report(catalog, lake, run_id)
    return True


def finish_human_grading(catalog: Catalog, lake: Lake, run_id: str, model: str, task_id: str) -> None:
    """Every doc graded: the partition's metrics include the human scores; the run may complete."""
    write_partition_metrics(catalog, lake, run_id, model, task_id)
    if not complete_if_done(catalog, lake, run_id):
        with catalog.session() as s:
            run = s.get(t.Run, run_id)
            assert run is not None  # complete_if_done just read it (run_row raises NotFound otherwise)
            completed = run.status == "completed"
        if completed:  # a completed run regraded by people: refresh its metrics object
            refresh_run_metrics(catalog, lake, run_id)
