"""Backends per worker process: a vLLM engine is loaded once and reused by every partition (and run)
that asks for the same model; loading another model first releases the previous one."""
from __future__ import annotations

import gc
import threading
from dataclasses import dataclass

from eval_pipeline.model_registry import Model

_lock = threading.Lock()
_loaded: dict[str, object] = {}


@dataclass
class Lease:
    backend: object  # has .generate(requests, run_generation, settings) -> list[Outcome]
    loaded_now: bool  # True when this call paid for an engine load


def backend_for(model: Model) -> Lease:
    if model.backend == "openai":
        from eval_pipeline.generation.openai_backend import OpenAIBackend

        return Lease(OpenAIBackend(model), False)
    with _lock:
        engine = _loaded.get(model.fingerprint)
        if engine is not None:
            return Lease(engine, False)
        release_all()
        from eval_pipeline.generation.vllm_engine import VllmEngine

        engine = _loaded[model.fingerprint] = VllmEngine(model)
        return Lease(engine, True)


def engine_info(backend: object) -> dict:
    """What a backend resolved when it loaded: {backend, dtype, max_model_len, tokenizer, ...}."""
    info = getattr(backend, "engine_info", None)
    return dict(info) if isinstance(info, dict) else {}


def release_all() -> None:
    """Drop every loaded engine, embedding models included (one model's memory at a time)."""
    from eval_pipeline.grading.embedding import release_embedders

    _loaded.clear()
    release_embedders()
    gc.collect()
