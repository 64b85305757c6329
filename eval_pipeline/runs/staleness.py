"""Stale cells of the model x task grid: a (model, task) whose latest completed result was produced by
something that has changed since. Three causes, each compared with what the result recorded:
- task_version: the suite's active version pins the task at another version (new inputs);
- grading: the task's metric_list, filter_list, eval_mode or lm-eval grading settings differ from those
  its grades were made with, or (when the caller names one) the judge model or rubric does;
- model: the registered model's fingerprint differs (weights or tokenizer files of a local folder, the
  revision, or a backend setting that changes outputs; models/registry.py).
A cell never evaluated is missing, not stale, and is not listed."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from eval_pipeline.errors import NotFound
from eval_pipeline.models.registry import list_models
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.suites.versions import active_version_row

GRADING_FIELDS = ("metric_list", "filter_list", "eval_mode", "lm_eval_grading", "judge_model", "rubric_sha256")


def grading_settings(task: t.Task, judge_model: str | None, rubric: str | None) -> dict[str, Any]:
    """What a task's grades depend on, recorded with each graded partition: lm-eval's metric_list and
    filter_list, the eval_mode, the lm-eval grading keys (target_delimiter, output_type...), and for a
    judged task the judge model and the rubric's sha256."""
    judged = "model" in (task.eval_mode or "").split(",")
    return {"metric_list": task.metric_spec or [], "filter_list": task.filter_spec or [],
            "eval_mode": task.eval_mode,
            "lm_eval_grading": {k: v for k, v in (task.grading or {}).items() if k not in ("gradability", "manifest")},
            "judge_model": judge_model if judged else None,
            "rubric_sha256": hashlib.sha256(rubric.encode()).hexdigest() if judged and rubric else None}


def _current_grading(task: t.Task, recorded: dict[str, Any], judge_model: str | None, rubric: str | None
                     ) -> dict[str, Any]:
    """The task's grading settings now; the judge and rubric are the caller's, else those recorded."""
    current = grading_settings(task, None, None)
    if "model" in (task.eval_mode or "").split(","):
        current["judge_model"] = judge_model if judge_model is not None else recorded.get("judge_model")
        current["rubric_sha256"] = (hashlib.sha256(rubric.encode()).hexdigest() if rubric is not None
                                    else recorded.get("rubric_sha256"))
    return current


@dataclass
class StaleCell:
    """One stale (model, task): the latest completed result (run, partition key) and why it is stale
    (reasons: {"cause": task_version | grading | model, "field", "was", "now"})."""

    suite_id: str
    model: str
    task: str
    task_id: str
    run_id: str
    partition_key: str
    completed_at: int
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As printed by `eval-pipeline stale`."""
        return {"suite_id": self.suite_id, "model": self.model, "task": self.task, "task_id": self.task_id,
                "latest_run_id": self.run_id, "partition_key": self.partition_key,
                "completed_at": self.completed_at, "reasons": self.reasons}


def latest_results(catalog: Catalog, suite_id: str, task_ids: list[str], model: str | None = None
                   ) -> dict[tuple[str, str], t.RunPartition]:
    """(model, task id) -> the partition of its latest completed result in the suite's runs (tasks are
    shared between suites and orgs; results are not): done, in a completed run."""
    with catalog.session() as s:
        q = (select(t.RunPartition).join(t.Run, t.Run.id == t.RunPartition.run_id)
             .where(t.Run.suite_id == suite_id, t.RunPartition.task_id.in_(task_ids),
                    t.RunPartition.status == "done", t.Run.status == "completed")
             .order_by(t.Run.completed_at, t.RunPartition.updated_at))
        if model is not None:
            q = q.where(t.RunPartition.model == model)
        latest: dict[tuple[str, str], t.RunPartition] = {}
        for part in s.scalars(q):
            s.expunge(part)
            latest[(part.model, part.task_id)] = part  # ordered oldest first: the last one wins
    return latest


def stale_cells(catalog: Catalog, suite_id: str, *, model: str | None = None, judge_model: str | None = None,
                rubric: str | None = None) -> list[StaleCell]:
    """The stale cells of a suite's active version (optionally one model's), ordered by model and task.
    `judge_model` and `rubric` name the judge the caller grades with now; unset, judge changes are not
    a cause. Models no longer registered are left out (nothing could re-evaluate them). Raises NotFound
    for an unknown suite, or a suite without versions."""
    with catalog.session() as s:
        suite = s.get(t.Suite, suite_id)
        version = active_version_row(s, suite) if suite is not None else None
        if version is None:
            raise NotFound("suite", suite_id)
        pins = {task.id: (task, pinned) for task, pinned in s.execute(
            select(t.Task, t.SuiteVersionTask.task_version)
            .join(t.SuiteVersionTask, t.SuiteVersionTask.task_id == t.Task.id)
            .where(t.SuiteVersionTask.suite_version_id == version.id))}
        for task, _ in pins.values():
            s.expunge(task)
    fingerprints = {m.name: m.fingerprint for m in list_models(catalog, implicit=True)}  # each hashed once
    out = []
    for (model_name, task_id), part in sorted(latest_results(catalog, suite_id, list(pins), model).items()):
        task, pinned = pins[task_id]
        now_fp = fingerprints.get(model_name)
        if now_fp is None:
            continue
        reasons = []
        if part.task_version != pinned:
            reasons.append({"cause": "task_version", "field": "task_version", "was": part.task_version, "now": pinned})
        recorded = (part.grading or {}).get("settings")
        if recorded is not None:  # graded before settings were recorded: this cause cannot be told
            current = _current_grading(task, recorded, judge_model, rubric)
            reasons += [{"cause": "grading", "field": f, "was": recorded.get(f), "now": current[f]}
                        for f in GRADING_FIELDS if recorded.get(f) != current[f]]
        if part.model_fingerprint != now_fp:
            reasons.append({"cause": "model", "field": "fingerprint", "was": part.model_fingerprint, "now": now_fp})
        if reasons:
            out.append(StaleCell(suite_id, model_name, task.name, task_id, part.run_id,
                                 f"{part.model_key}|{part.task_key}", part.updated_at, reasons))
    return out
