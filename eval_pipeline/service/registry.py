"""Actions on what the catalog registers: models, the grading settings of tasks, and API keys (a key is
shown once, at creation; only its hash is kept)."""
from __future__ import annotations

from typing import Any

from eval_pipeline.models import registry
from eval_pipeline.models.registry import Model
from eval_pipeline.models.registry import list_models as _list_models
from eval_pipeline.models.registry import model_options as _model_options
from eval_pipeline.stores import keys
from eval_pipeline.stores.keys import Principal
from eval_pipeline.stores.runtime import Runtime
from eval_pipeline.suites import tasks


def add_model(rt: Runtime, name: str, options: dict[str, Any], *, default: bool = False,
              replace: bool = False) -> Model:
    """Register a model under `name` (options: backend vllm, openai or sentence-transformers and its
    settings). Raises InvalidInput naming the option, Conflict for a name taken (unless `replace`)."""
    return registry.add_model(rt.catalog, name, options, default=default, replace=replace)


def remove_model(rt: Runtime, name: str) -> None:
    """Drop a registry entry. Raises NotFound."""
    registry.remove_model(rt.catalog, name)


def set_eval_mode(rt: Runtime, task_id: str, eval_mode: str) -> dict[str, Any]:
    """How a task is graded: rule, model (a judge), manual (people) or rule,model. Raises InvalidInput,
    NotFound."""
    return tasks.set_eval_mode(rt.catalog, task_id, eval_mode)


def set_metric_list(rt: Runtime, task_id: str, metric_list: list[Any]) -> dict[str, Any]:
    """A task's metrics as lm-eval's `metric_list` entries. Raises InvalidInput naming the entry, NotFound."""
    return tasks.set_metric_list(rt.catalog, task_id, metric_list)


def create_key(rt: Runtime, org_id: str, *, team_id: str | None = None, name: str | None = None,
               kind: str = "bearer") -> dict[str, Any]:
    """A new API key of the org (kind `aksk`: an access key / secret key pair for Qianfan-style signed
    calls, the secret derived from this home's master secret). Its secret is in this answer only."""
    master = keys.master_secret(rt.settings.home) if kind == "aksk" else None
    return keys.create_key(rt.catalog, org_id, team_id=team_id, name=name, kind=kind, master=master)


def revoke_key(rt: Runtime, key_id: str) -> dict[str, Any]:
    """Revoke a key: it authenticates nothing from now on. Raises NotFound."""
    return keys.revoke_key(rt.catalog, key_id)


def authenticate(rt: Runtime, key: str | None, user: str | None = None, kind: str = "bearer") -> Principal | None:
    """The caller a key (or an AK/SK access key, `kind` aksk) belongs to, acting for `user`; None when the
    key is unknown or revoked."""
    return keys.authenticate(rt.catalog, key, user, kind)


def aksk_secret(rt: Runtime, access_key: str) -> str:
    """The secret key of an access key, derived from this home's master secret (to check a signature)."""
    return keys.secret_key_for(keys.master_secret(rt.settings.home), access_key)
def list_models(rt: Runtime) -> list[Model]:
    """The model registry's entries."""
    return _list_models(rt.catalog)


def model_options(rt: Runtime, name: str) -> dict[str, Any]:
    """A registered model's options ({} for an unregistered name)."""
    return _model_options(rt.catalog, name)

