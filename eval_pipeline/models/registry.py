"""The model registry: names users put in a run, and how each is reached (a vLLM engine or an endpoint)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from eval_pipeline import ids
from eval_pipeline.errors import InvalidInput, NotFound
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.validation import Strict, parse_model

AUTO = "auto"


class VllmOptions(Strict):
    """A model run in-process by a vLLM engine: its folder or Hub id, revision, dtype, context window
    (max_model_len, tokens; None: the model's), GPUs (tensor_parallel_size) and the GPU memory fraction."""

    backend: Literal["vllm"] = "vllm"
    path: str = Field(min_length=1, description="A local model folder or a Hub id.")
    revision: str | None = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_model_len: int | None = Field(default=None, ge=16)
    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    chat: bool = False  # apply the tokenizer's chat template (lm-eval's --apply_chat_template)
    # lm-eval 0.4.13's add_bos_token: None leaves it to the tokenizer (Llama-style ones add BOS)
    add_bos_token: bool | None = None
    # lm-eval's vllm backend keeps special tokens in generated text, its hf backend drops them
    skip_special_tokens: bool = False


class OpenAIOptions(Strict):
    """A model behind an OpenAI-compatible endpoint (completions or chat API); timeouts in seconds; the API key
    is read from the environment variable `api_key_env` names, when the backend makes its client."""

    backend: Literal["openai"] = "openai"
    base_url: str = Field(pattern=r"^https?://")
    api: Literal["completions", "chat"] = "completions"
    served_name: str | None = None  # the endpoint's model name, when it differs from the registry's
    headers: dict[str, str] = Field(default_factory=dict)
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # a NAME, never a key
    connect_timeout: float = Field(default=10.0, gt=0, le=600)
    read_timeout: float = Field(default=600.0, gt=0, le=86_400)
    # Loglikelihood requests are tokenised here, as lm-eval does: the model's Hugging Face tokenizer (a
    # folder or id; default: the model folder a vLLM server names as `root` in /v1/models, else served_name)
    tokenizer: str | None = None
    max_length: int | None = Field(default=None, ge=16)  # the window; default the server's max_model_len, else 2048
    add_bos_token: bool | None = None  # as VllmOptions; lm-eval's local-completions uses False


class SentenceTransformersOptions(Strict):
    """An embedding model for the embedding grader, loaded with sentence-transformers."""

    backend: Literal["sentence-transformers"] = "sentence-transformers"
    path: str = Field(min_length=1, description="A local model folder (or a Hub id when a hub is reachable).")
    device: str = "cpu"
    batch_size: int = Field(default=64, ge=1, le=4096)


ModelOptions = Annotated[Union[VllmOptions, OpenAIOptions, SentenceTransformersOptions],
                         Field(discriminator="backend")]


class _Spec(Strict):
    options: ModelOptions


@dataclass(frozen=True)
class Model:
    """A registry entry: its name, Dagster partition key, backend options, and whether it is the default."""

    name: str
    key: str  # Dagster partition key
    options: VllmOptions | OpenAIOptions | SentenceTransformersOptions
    is_default: bool = False

    @property
    def backend(self) -> str:
        """vllm, openai or sentence-transformers."""
        return self.options.backend

    @cached_property
    def fingerprint(self) -> str:
        """Identity for the generation cache: name, backend settings that change outputs, and for a
        local folder its config and tokenizer contents (so a rebuilt model is a different model)."""
        o = self.options
        ident: dict[str, Any] = {"name": self.name, "backend": o.backend}
        if isinstance(o, VllmOptions):
            ident |= {"path": o.path, "revision": o.revision, "dtype": o.dtype, "chat": o.chat,
                      "bos": o.add_bos_token, "skip_special": o.skip_special_tokens, "max_model_len": o.max_model_len,
                      "local": _folder_digest(Path(o.path)) if Path(o.path).is_dir() else None}
        elif isinstance(o, SentenceTransformersOptions):
            ident |= {"path": o.path, "local": _folder_digest(Path(o.path)) if Path(o.path).is_dir() else None}
        else:
            ident |= {"base_url": o.base_url, "api": o.api, "served_name": o.served_name}
            ident |= {k: v for k, v in (("tokenizer", o.tokenizer), ("max_length", o.max_length),
                                         ("bos", o.add_bos_token)) if v is not None}
        return hashlib.sha256(orjson.dumps(ident, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The model object: object "model", name, key, default, and its options' fields (backend...)."""
        return {"object": "model", "name": self.name, "key": self.key, "default": self.is_default,
                **self.options.model_dump()}


def _folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.suffix in (".json", ".jinja", ".txt", ".model"):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
        elif p.is_file():  # weights: size and mtime, not a full read of gigabytes
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


def parse_options(data: dict[str, Any]) -> VllmOptions | OpenAIOptions | SentenceTransformersOptions:
    """Validate a model's options (the `backend` field picks the kind; default vllm is not assumed).
    Raises InvalidInput naming the bad option."""
    return parse_model(_Spec, {"options": data},
                       skip_loc=("options", "vllm", "openai", "sentence-transformers")).options


def _row_to_model(row: t.Model) -> Model:
    return Model(row.name, row.key, parse_options(row.options), row.is_default)


def _unique_key(s: Session, name: str) -> str:
    key = ids.slugify(name, max_len=64)
    if s.scalar(select(t.Model.key).where(t.Model.key == key)) is not None:
        key = ids.slugify(name + "#" + hashlib.sha256(name.encode()).hexdigest(), max_len=64)
    return key


def add_model(catalog: Catalog, name: str, options: dict[str, Any], *, default: bool = False,
              replace: bool = False) -> Model:
    """Register model `name` with `options` (see parse_options), as the default one when `default`; an
    implicit entry (a folder used by path) is taken over. Raises InvalidInput naming `name` (empty, `auto`,
    over 512 characters, or registered already without `replace`) or the bad option."""
    if not name or name == AUTO or len(name) > 512:
        raise InvalidInput("name", f"must be 1-512 characters and not {AUTO!r}")
    opts = parse_options(options)
    with catalog.session() as s:
        row = s.get(t.Model, name)
        if row is not None and not (replace or row.implicit):
            raise InvalidInput("name", f"model {name!r} is registered already (use --replace)")
        if default:
            s.execute(update(t.Model).values(is_default=False))
        if row is None:
            row = t.Model(name=name, key=_unique_key(s, name), created_at=now())
            s.add(row)
        row.backend, row.options, row.implicit = opts.backend, opts.model_dump(), False
        row.is_default = default or bool(row.is_default and replace)
        s.flush()
        return _row_to_model(row)


def list_models(catalog: Catalog, *, implicit: bool = False) -> list[Model]:
    """The registered models by name; implicit ones (folders used by path) only with `implicit`."""
    q = select(t.Model).order_by(t.Model.name)
    with catalog.session() as s:
        return [_row_to_model(r) for r in s.scalars(q if implicit else q.where(t.Model.implicit.is_(False)))]


def remove_model(catalog: Catalog, name: str) -> None:
    """Unregister model `name`. Raises NotFound (also for an implicit entry)."""
    with catalog.session() as s:
        row = s.get(t.Model, name)
        if row is None or row.implicit:
            raise NotFound("model", name)
        s.delete(row)


def resolve_model(catalog: Catalog, name: str, field: str = "models") -> Model:
    """resolve_in in a transaction of its own. Raises InvalidInput naming `field`."""
    with catalog.session() as s:
        return resolve_in(s, name, field)


def resolve_in(s: Session, name: str, field: str = "models") -> Model:
    """The registry entry for `name`: `auto` is the default model; an unregistered local model folder
    is registered on the fly (vllm backend) so that it gets a stable partition key. Inside the caller's
    transaction, so a request that fails later registers nothing. Raises InvalidInput naming `field` for
    `auto` with no default model, or a name that is neither registered nor a model folder (with config.json)."""
    if name == AUTO:
        row = s.scalar(select(t.Model).where(t.Model.is_default.is_(True)))
        if row is not None:
            return _row_to_model(row)
        name = os.environ.get("EVAL_PIPELINE_DEFAULT_MODEL") or ""
        if not name or name == AUTO:
            raise InvalidInput(field, "'auto' needs a default model: `eval-pipeline models add NAME ... "
                                      "--default` or EVAL_PIPELINE_DEFAULT_MODEL")
    row = s.get(t.Model, name)
    if row is not None:
        return _row_to_model(row)
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file():
        raise InvalidInput(field, f"{name!r} is neither a registered model nor a local model folder")
    row = t.Model(name=name, key=_unique_key(s, name), backend="vllm",
                  options=VllmOptions(path=str(folder.resolve())).model_dump(), is_default=False, implicit=True,
                  created_at=now())
    s.add(row)
    s.flush()
    return _row_to_model(row)


def model_by_key(catalog: Catalog, key: str) -> Model:
    """The model whose Dagster partition key is `key`. Raises NotFound."""
    with catalog.session() as s:
        row = s.scalar(select(t.Model).where(t.Model.key == key))
        if row is None:
            raise NotFound("model partition", key)
        return _row_to_model(row)


def model_options(catalog: Catalog, name: str) -> dict[str, Any]:
    """The registry entry's options as stored (backend, path or base_url, ...); {} for an unregistered name."""
    with catalog.session() as s:
        row = s.get(t.Model, name)
        return dict(row.options) if row is not None else {}
