"""Embedding grading: the cosine similarity of each generated answer's embedding and its reference's,
with the run's `embedding_model` (a sentence-transformers model, or a vLLM pooling model)."""
from __future__ import annotations

import numpy as np

from eval_pipeline.generation.backends import embed
from eval_pipeline.grading.generated_docs import generation_docs
from eval_pipeline.grading.grade_files import embedding_grader, grades_path, grades_table
from eval_pipeline.models.registry import resolve_model
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake

METRIC = "embedding_similarity"


def embedding_partition(catalog: Catalog, lake: Lake, run_id: str, model: str, task_id: str) -> str | None:
    """Grade one partition's generated answers by embedding and return the grades file's lake path (kept
    when this model graded them already), or None when the run sets no embedding model or the task generates
    nothing (multiple choice). Scores are cosine similarities in [-1, 1]; a failed generation is a row with
    its error. Raises InvalidInput (embedding_model) when the model no longer resolves, ValueError for one
    that cannot embed."""
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        part = s.get(t.RunPartition, (run_id, model, task_id))
        assert run is not None  # the run of a partition being graded
        if not run.embedding_model:
            return None
        assert part is not None
        name, keys = run.embedding_model, (part.model_key, part.task_key)
    path = grades_path(run_id, *keys, grader=embedding_grader(name))
    if lake.exists(path):
        return path
    docs = generation_docs(catalog, lake, run_id, model, task_id)
    ok = [d for d in docs if d.error is None and d.kind != "loglikelihood"]
    scores: dict[int, float] = {}
    if ok:
        vectors = embed(resolve_model(catalog, name, "embedding_model"),
                        [d.prediction or "" for d in ok] + [d.reference for d in ok])
        half = len(ok)
        sims = np.clip(np.sum(vectors[:half] * vectors[half:], axis=1), -1.0, 1.0)
        scores = {d.doc_id: float(x) for d, x in zip(ok, sims)}
    rows = [(d.doc_id, "none", METRIC, scores.get(d.doc_id), f"embedding:{name}",
             None if d.doc_id in scores else d.error, None) for d in docs if d.kind != "loglikelihood"]
    if not rows:  # multiple choice: no generated answers to compare
        return None
    lake.write_table(path, grades_table(run_id, model, task_id, rows))
    return path

