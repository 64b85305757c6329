"""A run's samples, one per (model, task, doc) that has been generated: what was asked and answered,
the expected answer, every current grade, the judge's verdict, tokens. Read from the lake's
generations, task inputs and grade files (the catalog only says which partitions and files).

A sample's id is `<run id>:<model key>:<task key>:<doc id>`: stable, so it can be a page cursor."""
from __future__ import annotations

from typing import Any, cast

from sqlalchemy import select

from eval_pipeline.errors import InvalidInput, NotFound
from eval_pipeline.grading.generated_docs import DocAnswer, generation_docs
from eval_pipeline.grading.grade_files import active_grade_files
from eval_pipeline.grading.human import METRIC as HUMAN_METRIC
from eval_pipeline.scoring.gradability import PREDICT_ONLY, REFUSED
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake

STATUSES = ("queued", "generating", "ready_to_score", "scoring", "running", "completed", "failed")


def _grades(lake: Lake, run: t.Run, part: t.RunPartition
            ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, Any]]]:
    """(doc -> {"metric,filter": score}, doc -> judge verdict) from the partition's current graders."""
    scores: dict[int, dict[str, float]] = {}
    judged: dict[int, dict[str, Any]] = {}
    for path in active_grade_files(lake, run, part.model_key, part.task_key):
        for g in lake.read_table(path).to_pylist():
            if g["error"] is None and g["score"] is not None:
                scores.setdefault(g["doc_id"], {})[f"{g['metric']},{g['filter']}"] = g["score"]
            if g["grader"].startswith("judge:"):
                judged[g["doc_id"]] = {"grader": g["grader"], "score": g["score"], "rationale": g["rationale"],
                                       "rubric_sha256": g["rubric_sha256"], "error": g["error"]}
    return scores, judged


def list_samples(catalog: Catalog, lake: Lake, run_id: str, *, org_id: str | None = None, after: str | None = None,
                 limit: int = 100, task_id: str | None = None, model: str | None = None, status: str | None = None,
                 score_metric: str | None = None, score_min: float | None = None, score_max: float | None = None,
                 include_dataset_row: bool = True, sample_index: int | None = None
                 ) -> tuple[list[dict[str, Any]], bool]:
    """(a page of up to `limit` MKA1 `eval.sample` objects, whether more follow), after the sample id
    `after`, by task, model and doc. `score_metric` is `metric` or `metric,filter`; with `score_min`/
    `score_max` it keeps the samples whose score lies within them. Raises InvalidInput naming the field
    (score_metric, status, after), NotFound for an unknown run (or one of another org than `org_id`)."""
    if (score_min is not None or score_max is not None) and not score_metric:
        raise InvalidInput("score_metric", "is required with score_min or score_max")
    if status is not None and status not in STATUSES:
        raise InvalidInput("status", f"must be one of {', '.join(STATUSES)}")
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        if run is None or (org_id is not None and run.org_id != org_id):
            raise NotFound("run", run_id)
        q = select(t.RunPartition).where(t.RunPartition.run_id == run_id).order_by(t.RunPartition.task_key,
                                                                                   t.RunPartition.model_key)
        if task_id:
            q = q.where(t.RunPartition.task_id == task_id)
        if model:
            q = q.where(t.RunPartition.model == model)
        parts = list(s.scalars(q))
        manual = set(s.scalars(select(t.Task.id).where(t.Task.id.in_({p.task_id for p in parts}),
                                                       t.Task.eval_type == "manual")))
        for p in parts:
            s.expunge(p)
        s.expunge(run)
    out: list[dict[str, Any]] = []
    skipping = after is not None
    for part in parts:
        if not part.chunks:
            continue
        prefix = f"{run_id}:{part.model_key}:{part.task_key}:"
        if skipping and not cast(str, after).startswith(prefix):  # skipping: `after` is given
            continue  # partitions are listed in order: the cursor's lies further on
        scores, judged = _grades(lake, run, part)
        for d in generation_docs(catalog, lake, run_id, part.model, part.task_id, with_doc=include_dataset_row):
            sid = f"{prefix}{d.doc_id}"
            if skipping:
                if sid == after:
                    skipping = False
                continue
            sample = _sample(run, part, d, sid, scores.get(d.doc_id, {}), judged.get(d.doc_id),
                             awaiting_person=part.task_id in manual)
            if _keep(sample, status, score_metric, score_min, score_max, sample_index):
                out.append(sample)
                if len(out) > limit:
                    return out[:limit], True
    if skipping:
        raise InvalidInput("after", f"{after} is not a sample of run {run_id}")
    return out, False


def _sample(run: t.Run, part: t.RunPartition, d: DocAnswer, sid: str, scores: dict[str, float],
            judge: dict[str, Any] | None, *, awaiting_person: bool = False) -> dict[str, Any]:
    """`ready_to_score`: generated, not graded yet (for a manual task: no human grade yet)."""
    if awaiting_person:
        graded = any(k.split(",", 1)[0] == HUMAN_METRIC for k in scores) or d.error is not None
    else:
        graded = bool(scores) or d.error is not None
    grading = part.grading or {}
    not_gradable = grading.get("status") in (REFUSED, PREDICT_ONLY) and not graded
    status = "failed" if d.error else ("completed" if graded or not_gradable else "ready_to_score")
    error = {"message": d.error} if d.error else (
        {"type": grading["status"], "message": grading.get("reason")} if not_gradable else None)
    return {
        "id": sid, "object": "eval.sample", "run_id": run.id, "task_id": part.task_id, "model": part.model,
        "sample_index": d.doc_id, "status": status, "dataset_row": d.doc, "prompt": d.prompt or "",
        "target": d.reference, "response_id": None, "output_text": d.prediction, "reasoning": None,
        "extracted_output": None, "scores": scores, "judge": judge,
        "error": error, "cost_usd": None, "input_tokens": d.input_tokens,
        "output_tokens": d.output_tokens, "cached_tokens": None, "reasoning_tokens": None,
        "tokens_estimated": False, "phase_timings": None, "created_at": run.created_at,
        "started_at": run.started_at, "completed_at": part.updated_at if part.status == "done" else None,
        "engine": part.engine,  # what answered: backend, resolved dtype, window, tokenizer
    }


def _keep(sample: dict[str, Any], status: str | None, metric: str | None, low: float | None, high: float | None,
          index: int | None) -> bool:
    if status is not None and sample["status"] != status:
        return False
    if index is not None and sample["sample_index"] != index:
        return False
    if metric:
        values = [v for k, v in sample["scores"].items() if k == metric or k.split(",")[0] == metric]
        if not values:
            return False
        return all((low is None or v >= low) and (high is None or v <= high) for v in values)
    return True
