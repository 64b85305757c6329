"""Which of a task's scores this product computes, and how: natively (lm-eval's filters and metric functions
fed as lm-eval's ConfigurableTask feeds them), through the installed lm-eval's own task code (a task whose
scoring is Python, found in `lm_eval.tasks.TaskManager`), not at all (lm-eval's `--predict_only` output),
or refused with the reason. Decided at import, recorded on the task, shown before a run and obeyed by
grading: no number computed another way is ever shown under lm-eval's metric name.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, cast

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

NATIVE = "native"
REGISTRY = "lm-eval-registry"
PREDICT_ONLY = "predict-only"
REFUSED = "not-gradable"
BYPASS = "bypass"  # lm-eval's placeholder metric of --predict_only runs (bypass_agg returns 999)
OUTPUT_TYPES = ("generate_until", "multiple_choice", "loglikelihood", "loglikelihood_rolling")


@dataclass(frozen=True)
class Gradability:
    """`status`: native | lm-eval-registry | predict-only | not-gradable; `reason` says why for the last
    two and what ran for the registry (task version of the installed lm-eval)."""

    status: str
    reason: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """{"status", "reason"}, as the catalog keeps it (RunPartition.grading, the task's grading settings)."""
        return {"status": self.status, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Gradability | None":
        """The Gradability of a to_dict() mapping; None for anything without a status."""
        return cls(data["status"], data.get("reason")) if isinstance(data, dict) and data.get("status") else None


# How lm-eval writes a Python callable into a results file's configs (its source, or its repr).
_CODE = ("def ", "lambda", "<function", "<built-in", "<bound method", "functools.partial(", "!function")


def _is_code(value: Any) -> bool:
    return isinstance(value, str) and (value.lstrip().startswith(_CODE) or "\n" in value)


def _python_scored(config: dict[str, Any]) -> str | None:
    """What in an imported task config is Python in lm-eval's task code, or None."""
    if config.get("process_results"):
        return "process_results"
    for entry in config.get("metric_list") or []:
        if not isinstance(entry, dict):
            continue
        for key in ("metric", "aggregation"):
            if _is_code(entry.get(key)):
                return f"a custom metric_list {key}"
    for entry in config.get("filter_list") or []:
        for step in (entry.get("filter") or []) if isinstance(entry, dict) else []:
            if isinstance(step, dict) and (step.get("function") == "custom" or any(map(_is_code, step.values()))):
                return "a custom filter function"
    return None


def decide(name: str, output_type: str | None, config: dict[str, Any], metric_names: list[str]) -> Gradability:
    """The gradability of task `name` from its imported lm-eval config (its `configs` entry; {} when the
    results file had none) and the metric names it reported."""
    if metric_names and all(m == BYPASS for m in metric_names):
        return Gradability(PREDICT_ONLY, "lm-eval --predict_only output: its 'bypass' metric is a placeholder "
                                         "(999), not a score; runs generate and grade nothing")
    if output_type and output_type not in OUTPUT_TYPES and output_type != "unknown":
        return Gradability(REFUSED, f"output_type {output_type!r} is not one lm-eval 0.4.13 defines")
    python = _python_scored(config)
    if python is None and not config:
        # no config kept (legacy files, bare results mappings): the registry says how lm-eval scores the task
        known = registry_task(name)
        if known is not None and callable(known.get("process_results")):
            python = "process_results"
    if python is None:
        return Gradability(NATIVE)
    task = registry_task(name) if python == "process_results" else None
    if task is not None and callable(task.get("process_results")):
        version = (task.get("metadata") or {}).get("version")
        return Gradability(REGISTRY, f"{python} of lm-eval {lm_eval_version()}'s task {name!r}"
                                     + (f" (task version {version})" if version is not None else ""))
    if python != "process_results":
        return Gradability(REFUSED, f"its scoring is Python in lm-eval's task code ({python}), which this product "
                                    "does not run")
    return Gradability(REFUSED, f"its scoring is Python in lm-eval's task code ({python}) and {name!r} is not a "
                                f"task of the installed lm-eval {lm_eval_version()}'s registry")


def lm_eval_version() -> str:
    """The installed lm-eval package's version (e.g. "0.4.13")."""
    return metadata.version("lm-eval")


@functools.cache
def _task_manager() -> TaskManager:
    # Deferred: indexing lm-eval's ~13,000 task configs takes seconds, and only Python-scored tasks need it.
    from lm_eval.tasks import TaskManager  # deferred: lm_eval's task registry takes seconds to build

    return TaskManager()


@functools.cache
def registry_task(name: str) -> dict[str, Any] | None:
    """The installed lm-eval's config of task `name` with its `!function`s resolved to callables, or None
    when the registry has no YAML task of that name (its dataset is not loaded)."""
    from lm_eval.tasks._yaml_loader import load_yaml  # deferred: lm_eval takes seconds to import

    entry = _task_manager().task_index.get(name)
    if entry is None or entry.yaml_path is None:
        return None
    try:
        return cast(dict[str, Any], load_yaml(entry.yaml_path, resolve_func=True))  # lm_eval is untyped
    except Exception:  # noqa: BLE001  a task whose code cannot be imported here is simply not available
        return None


def registry_process_results(name: str) -> Callable[[dict[str, Any], list[Any]], dict[str, Any]]:
    """lm-eval's own `process_results(doc, results)` of a registry task, which returns {metric: item} for one
    doc (KeyError when it has none)."""
    task = registry_task(name)
    fn = (task or {}).get("process_results")
    if not callable(fn):
        raise KeyError(f"task {name!r} has no process_results in lm-eval's registry")
    return cast(Callable[[dict[str, Any], list[Any]], dict[str, Any]], fn)  # lm-eval's task code is untyped
