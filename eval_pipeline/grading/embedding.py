"""Embedding grading: the cosine similarity of each generated answer's embedding and its reference's,
with the run's `embedding_model` (a sentence-transformers model, or a vLLM pooling model)."""
from __future__ import annotations

import hashlib
import threading

import numpy as np

from eval_pipeline.catalog import Catalog
from eval_pipeline.catalog import tables as t
from eval_pipeline.lake import Lake
from eval_pipeline.model_registry import Model

METRIC = "embedding_similarity"
_lock = threading.RLock()  # loading a vLLM embedder releases every engine, this cache included
_loaded: dict[str, object] = {}


def embedding_grader(embedding_model: str) -> str:
    return "embedding-" + hashlib.sha256(embedding_model.encode()).hexdigest()[:16]


def release_embedders() -> None:
    with _lock:
        _loaded.clear()


def embed(model: Model, texts: list[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text (the model is loaded once per process)."""
    o = model.options
    with _lock:
        encoder = _loaded.get(model.fingerprint)
        if encoder is None:
            encoder = _loaded[model.fingerprint] = _load(model)
    if o.backend == "sentence-transformers":
        return encoder.encode(texts, batch_size=o.batch_size, convert_to_numpy=True, normalize_embeddings=True,
                              show_progress_bar=False)
    vectors = np.array([r.outputs.embedding for r in encoder.embed(texts, use_tqdm=False)], dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _load(model: Model):
    o = model.options
    if o.backend == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(o.path, device=o.device, local_files_only=True)
    if o.backend == "vllm":
        from eval_pipeline.generation.engines import release_all
        from eval_pipeline.generation.vllm_engine import apply_cpu_defaults

        apply_cpu_defaults()
        from vllm import LLM

        release_all()  # one engine's memory at a time
        return LLM(model=o.path, runner="pooling", dtype=o.dtype, enforce_eager=True,
                   **({"max_model_len": o.max_model_len} if o.max_model_len else {}))
    raise ValueError(f"model {model.name!r} (backend {o.backend}) cannot embed text")


def embedding_partition(catalog: Catalog, lake: Lake, run_id: str, model: str, task_id: str) -> str | None:
    """Embedding grades of one partition's generated answers, or None when the run sets no embedding
    model or the task generates nothing (multiple choice)."""
    from eval_pipeline.grading.partition import generation_docs, grades_path, grades_table
    from eval_pipeline.model_registry import resolve_model

    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        part = s.get(t.RunPartition, (run_id, model, task_id))
        if not run.embedding_model:
            return None
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
