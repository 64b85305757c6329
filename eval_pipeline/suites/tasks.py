"""Tasks: one per lm-eval task name, versioned by their evaluation inputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from eval_pipeline import ids
from eval_pipeline.errors import InvalidInput, NotFound
from eval_pipeline.harness.results import MEAN_METRICS, TaskResult
from eval_pipeline.scoring.corpus import CORPUS_METRICS
from eval_pipeline.scoring.gradability import Gradability, decide
from eval_pipeline.scoring.rules import NUMERIC_MATCH, _lm_eval
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.files import register_file
from eval_pipeline.stores.lake import BULK, StoredFile

# A task's evaluation inputs, one row per doc: what every run of the task asks (the requests' prompt and
# continuations) and expects (target).
INPUTS_SCHEMA = pa.schema([
    ("doc_id", pa.int64()), ("request_kind", pa.string()), pa.field("prompt", pa.string(), metadata=BULK),
    ("continuations", pa.list_(pa.string())), ("gen_kwargs", pa.string()),
    ("target", pa.string()), pa.field("doc", pa.string(), metadata=BULK),
    # One context per continuation (loglikelihood); empty when every request shares `prompt`.
    pa.field("contexts", pa.list_(pa.string()), metadata=BULK),
])
# One INPUTS_SCHEMA row as a tuple: (doc_id, request_kind, prompt, continuations, gen_kwargs JSON, target JSON,
# doc JSON, contexts); the JSON columns as UTF-8 bytes.
InputsRow = tuple[int, str, str, list[str], bytes, bytes, bytes, list[str]]


@dataclass
class TaskSpec:
    """An imported lm-eval task as the catalog keeps it: lm-eval's metric_list and filter_list entries, its
    generation_kwargs, its version (`lm-eval-version:` tag), the inputs a run brings, and `grading`: the
    GRADING_KEYS of its config plus `gradability`."""

    name: str
    slug: str
    type: str
    request_kind: str
    metric_spec: list[dict[str, Any]]
    filter_spec: list[dict[str, Any]]
    generation_defaults: dict[str, Any]
    version_label: str | None
    inputs: TaskInputs | None = field(default=None)
    grading: dict[str, Any] = field(default_factory=dict)


def task_spec(task: TaskResult) -> TaskSpec:
    """The spec of a task of an lm-eval results file: its config's metric_list / filter_list, else one
    entry per metric / filter the results report (aggregation mean for lm-eval's mean metrics); its
    generation_kwargs, version, and `grading` with the gradability scoring.gradability.decide gives."""
    cfg = task.config
    metric_spec = cfg.get("metric_list") or [
        {"metric": name, "aggregation": "mean" if name in MEAN_METRICS else None,
         "higher_is_better": task.higher_is_better.get(name)}
        for name in sorted({m.metric for m in task.metrics})
    ]
    filter_spec = cfg.get("filter_list") or [{"name": f} for f in sorted({m.filter for m in task.metrics})]
    return TaskSpec(
        name=task.name,
        slug=ids.slugify(task.name),
        type=task.output_type or "unknown",
        request_kind=task.request_kind,
        metric_spec=metric_spec,
        filter_spec=filter_spec,
        generation_defaults=cfg.get("generation_kwargs") or {},
        version_label=None if task.version is None else str(task.version),
        grading={k: cfg[k] for k in GRADING_KEYS if k in cfg} | {"gradability": decide(
            task.name, task.output_type, cfg, sorted({m.metric for m in task.metrics})).to_dict()},
    )


# What rule grading reads from a task's lm-eval config besides its metric_list and filter_list.
GRADING_KEYS = ("output_type", "target_delimiter", "fewshot_delimiter", "repeats", "doc_to_choice")


def _has_inputs(s: Session, task: t.Task) -> bool:
    tv = s.get(t.TaskVersion, (task.id, task.current_version))
    return tv is not None and tv.inputs_file_id is not None


def _add_version(s: Session, task: t.Task, version: int, inputs: TaskInputs | None) -> None:
    file_id = register_file(s, "task_inputs", inputs.stored) if inputs is not None else None
    s.add(t.TaskVersion(task_id=task.id, version=version, inputs_file_id=file_id,
                        inputs_sha256=inputs.sha256 if inputs else None,
                        n_docs=inputs.n_docs if inputs else 0, created_at=now()))
    task.current_version = version
    task.updated_at = now()


def tasks_with_inputs(catalog: Catalog, names: Iterable[str]) -> set[str]:
    """Those of `names` that are tasks whose current version has evaluation inputs."""
    with catalog.session() as s:
        tasks = s.scalars(select(t.Task).where(t.Task.name.in_(list(names))))
        return {task.name for task in tasks if _has_inputs(s, task)}


def ensure_tasks(s: Session, specs: Iterable[TaskSpec]) -> dict[str, str]:
    """{name: task id}; creates missing tasks, and a new version for a task gaining inputs."""
    specs = list(specs)
    existing = {task.name: task for task in s.scalars(
        select(t.Task).where(t.Task.name.in_([sp.name for sp in specs])))}
    out = {}
    for sp in specs:
        task = existing.get(sp.name)
        if task is None:
            task = t.Task(
                id=ids.new_id("task"), name=sp.name, slug=sp.slug, description=None, type=sp.type,
                eval_type="auto", eval_mode="rule", request_kind=sp.request_kind,
                metric_spec=sp.metric_spec, filter_spec=sp.filter_spec, grading=sp.grading,
                generation_defaults=sp.generation_defaults or (sp.inputs.gen_kwargs if sp.inputs else {}),
                current_version=0, system_tags=["lm-eval"] + (
                    [f"lm-eval-version:{sp.version_label}"] if sp.version_label else []),
                user_tags=[], created_at=now(), updated_at=now(),
            )
            s.add(task)
            s.flush()
            _add_version(s, task, 1, sp.inputs)
        elif sp.inputs is not None and not _has_inputs(s, task):
            _add_version(s, task, task.current_version + 1, sp.inputs)
        if sp.grading and not (task.grading or {}).get("gradability"):  # tasks created before these were kept
            task.grading = {**sp.grading, **(task.grading or {}), "gradability": sp.grading.get("gradability")}
        out[sp.name] = task.id
    s.flush()
    return out


def task_gradability(task: t.Task) -> Gradability:
    """As decided at import; tasks imported before it was recorded are decided from what they kept."""
    grading = task.grading or {}
    return Gradability.from_dict(grading.get("gradability")) or decide(
        task.name, grading.get("output_type") or task.type, {},
        [m["metric"] for m in task.metric_spec or [] if isinstance(m, dict) and isinstance(m.get("metric"), str)])


EVAL_MODES = ("rule", "model", "rule,model", "manual")


def set_eval_mode(catalog: Catalog, task_id: str, eval_mode: str) -> dict[str, Any]:
    """How a task is graded: by rule, by a judge model, both, or by people (eval_type manual).

    `eval_mode` is one of EVAL_MODES; returns the `eval.task` dict. Raises InvalidInput (eval_mode), NotFound."""
    if eval_mode not in EVAL_MODES:
        raise InvalidInput("eval_mode", f"must be one of {', '.join(EVAL_MODES)}")
    with catalog.session() as s:
        task = s.get(t.Task, task_id)
        if task is None:
            raise NotFound("task", task_id)
        task.eval_mode, task.eval_type = eval_mode, "manual" if eval_mode == "manual" else "auto"
        task.updated_at = now()
        tv = s.get(t.TaskVersion, (task.id, task.current_version))
        return task_object(task, tv)


def set_metric_list(catalog: Catalog, task_id: str, metric_list: list[Any]) -> dict[str, Any]:
    """Replace a task's lm-eval `metric_list` (e.g. add `numeric_match` with `abs_tol` for math answers);
    later runs grade with it, earlier runs keep their grades.

    Returns the `eval.task` dict. Raises InvalidInput (`metric_list[i].metric`) for a metric neither lm-eval's
    registry nor this project grades, NotFound for an unknown task."""
    if not isinstance(metric_list, list) or not metric_list:
        raise InvalidInput("metric_list", "must be a non-empty list of {\"metric\": name, ...options}")
    registry = _lm_eval()
    for i, entry in enumerate(metric_list):
        name = entry.get("metric") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"metric_list[{i}].metric", "is required (a metric name)")
        # lm-eval's own registry only: its lookup would fall back to fetching HF Evaluate metrics
        if name not in (NUMERIC_MATCH, *CORPUS_METRICS) and name not in registry.metric_registry:
            raise InvalidInput(f"metric_list[{i}].metric", f"{name!r} is not a metric lm-eval or this "
                                                           "project grades")
    with catalog.session() as s:
        task = s.get(t.Task, task_id)
        if task is None:
            raise NotFound("task", task_id)
        task.metric_spec, task.updated_at = list(metric_list), now()
        return task_object(task, s.get(t.TaskVersion, (task.id, task.current_version)))


def list_tasks(catalog: Catalog) -> list[dict[str, Any]]:
    """Every task at its current version, as `eval.task` dicts, by name."""
    with catalog.session() as s:
        rows = s.execute(select(t.Task, t.TaskVersion).join(
            t.TaskVersion, (t.TaskVersion.task_id == t.Task.id)
            & (t.TaskVersion.version == t.Task.current_version)).order_by(t.Task.name)).all()
        return [task_object(task, tv) for task, tv in rows]


def task_object(task: t.Task, tv: t.TaskVersion | None) -> dict[str, Any]:
    """The `eval.task` dict the APIs serve (times in epoch seconds as stored); `tv` gives inputs_file_id and
    n_docs (None: no inputs, 0 docs)."""
    return {
        "id": task.id, "object": "eval.task", "name": task.name, "slug": task.slug, "type": task.type,
        "eval_type": task.eval_type, "eval_mode": task.eval_mode, "request_kind": task.request_kind,
        "metrics": task.metric_spec, "filters": task.filter_spec,
        "generation_defaults": task.generation_defaults, "version": task.current_version,
        "gradability": task_gradability(task).to_dict(),
        "inputs_file_id": tv.inputs_file_id if tv else None, "n_docs": tv.n_docs if tv else 0,
        "system_tags": task.system_tags, "user_tags": task.user_tags,
        "created_at": task.created_at, "updated_at": task.updated_at,
    }


@dataclass
class TaskInputs:
    """A task's evaluation inputs as ingested: the Parquet file written (None on a dry run), its sha256,
    the number of docs, and the generation kwargs the samples were made with."""

    stored: StoredFile | None
    sha256: str
    n_docs: int
    gen_kwargs: dict[str, Any]

