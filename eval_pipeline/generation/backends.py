"""Generation backends and the models a worker process holds: a vLLM engine (or an embedder) is loaded
once and reused by every partition and run that asks for the same model. A process keeps at most
EVAL_PIPELINE_MAX_ENGINES engines (default 1: one model's memory at a time); loading one more first
releases the least recently used."""
from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from eval_pipeline.errors import InvalidInput
from eval_pipeline.generation.requests import GenRequest
from eval_pipeline.generation.rows import Outcome
from eval_pipeline.generation.vllm_backend import VllmEngine, apply_cpu_defaults
from eval_pipeline.models.registry import Model

if TYPE_CHECKING:
    import numpy.typing as npt


class Backend(Protocol):
    """What answers a partition's requests (the role of lm-eval's `LM`: lm_eval/api/model.py)."""

    @property
    def engine_info(self) -> dict[str, Any]:
        """What the backend resolved when it loaded: {backend, dtype, max_model_len, tokenizer, ...}."""

    def generate(self, requests: list[GenRequest], run_generation: dict[str, Any],
                 settings: dict[str, Any]) -> list[Outcome]:
        """One Outcome per request, in the order given. `run_generation` is the run's generation object,
        `settings` its settings. A request that fails alone becomes an Outcome with `error` set; an
        exception means the whole batch failed."""


_lock = threading.Lock()
_loaded: OrderedDict[str, Backend] = OrderedDict()  # by model fingerprint, least recently used first


def engine_limit() -> int:
    """How many engines a process keeps: EVAL_PIPELINE_MAX_ENGINES (1..64, default 1). Raises
    InvalidInput naming the variable when it is not such a number."""
    raw = os.environ.get("EVAL_PIPELINE_MAX_ENGINES") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise InvalidInput("EVAL_PIPELINE_MAX_ENGINES", f"{raw!r} is not a number of engines in 1..64")
    return int(raw)


@dataclass
class Lease:
    """A backend handed to one partition, and whether this call paid for loading it."""

    backend: Backend
    loaded_now: bool


def backend_for(model: Model) -> Lease:
    """The backend of a registered model: a new OpenAI-compatible client, or this process's vLLM engine
    for the model (loaded now when it is not held, after releasing the least recently used engines beyond
    engine_limit() - 1, and any embedder)."""
    if model.backend == "openai":
        # deferred: the openai client takes 0.7 s to import and a vllm-only process never needs it
        from eval_pipeline.generation.openai_backend import OpenAIBackend

        return Lease(OpenAIBackend(model), False)
    limit = engine_limit()
    with _lock:
        engine = _loaded.get(model.fingerprint)
        if engine is not None:
            _loaded.move_to_end(model.fingerprint)
            return Lease(engine, False)
        while len(_loaded) >= limit:
            _loaded.popitem(last=False)
        release_embedders()
        gc.collect()
        engine = _loaded[model.fingerprint] = VllmEngine(model)
        return Lease(engine, True)


def loaded_engines() -> list[str]:
    """The fingerprints of the engines this process holds, least recently used first."""
    with _lock:
        return list(_loaded)


def engine_gpus(backend: Backend) -> int:
    """The GPUs a backend's work holds, for GPU-seconds: EVAL_PIPELINE_WORKER_GPUS when the deployment says
    (a gpu worker's devices), else what the engine resolved (`gpus` in engine_info: vLLM's tensor-parallel
    size on a GPU build, 0 on the CPU build; 0 for a remote endpoint, whose GPUs are not ours to count).
    Raises InvalidInput naming the variable when it is not a number in 0..64."""
    raw = os.environ.get("EVAL_PIPELINE_WORKER_GPUS")
    if raw:
        if not raw.isdigit() or int(raw) > 64:
            raise InvalidInput("EVAL_PIPELINE_WORKER_GPUS", f"{raw!r} is not a number of GPUs in 0..64")
        return int(raw)
    return int(backend.engine_info.get("gpus") or 0)


def engine_info(backend: Backend) -> dict[str, Any]:
    """A copy of what the backend resolved when it loaded (see Backend.engine_info)."""
    return dict(backend.engine_info)


def release_all() -> None:
    """Drop every loaded engine, embedding models included (one model's memory at a time)."""
    _loaded.clear()
    release_embedders()
    gc.collect()


_embed_lock = threading.RLock()  # loading a vLLM embedder releases every engine, this cache included
_embedders: dict[str, Any] = {}


def release_embedders() -> None:
    """Drop every loaded embedding model."""
    with _embed_lock:
        _embedders.clear()


def embed(model: Model, texts: list[str]) -> npt.NDArray[np.float32]:
    """Unit-length embeddings, shape (len(texts), dim), float32, of a sentence-transformers or vllm
    model (loaded once per process). Raises ValueError for a model that cannot embed."""
    o = model.options
    with _embed_lock:
        encoder = _embedders.get(model.fingerprint)
        if encoder is None:
            encoder = _embedders[model.fingerprint] = _load_embedder(model)
    if o.backend == "sentence-transformers":
        return cast("npt.NDArray[np.float32]", encoder.encode(
            texts, batch_size=o.batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False))
    vectors = np.array([r.outputs.embedding for r in encoder.embed(texts, use_tqdm=False)], dtype=np.float32)
    return cast("npt.NDArray[np.float32]", vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12))


def _load_embedder(model: Model) -> Any:
    """A SentenceTransformer (local files only) or a pooling vLLM engine; ValueError for another backend."""
    o = model.options
    if o.backend == "sentence-transformers":
        from sentence_transformers import SentenceTransformer  # deferred: a heavy import few processes need

        return SentenceTransformer(o.path, device=o.device, local_files_only=True)
    if o.backend == "vllm":
        apply_cpu_defaults()  # before vllm is first imported: it reads the environment then
        from vllm import LLM  # deferred: importing vLLM takes seconds and most processes never embed

        release_all()  # one engine's memory at a time
        window: dict[str, Any] = {"max_model_len": o.max_model_len} if o.max_model_len else {}
        return LLM(model=o.path, runner="pooling", dtype=o.dtype, enforce_eager=True, **window)
    raise ValueError(f"model {model.name!r} (backend {o.backend}) cannot embed text")

