"""Comparisons a table of metrics does not show.

- Paired: two models of one run on the same task, doc by doc. The difference of means is the mean of
  per-doc differences; its stderr is their sample standard deviation over sqrt(n) and the p-value is
  scipy's paired t-test. Pairing removes the variance the docs share, so differences too small for
  two overlapping error bars can still be significant.
- History: a model with imported historical results on the task (same model name, or the registered
  model's path), per metric: the delta, with the two standard errors combined as independent and a
  two-sided normal p-value.
"""
from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations
from typing import Any, cast

import numpy as np
from sqlalchemy import select

from eval_pipeline.errors import NotFound
from eval_pipeline.grading.grade_files import doc_scores
from eval_pipeline.results.metrics import Z95
from eval_pipeline.scoring.corpus import CORPUS_METRICS
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake


def paired_difference(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Mean of a - b (doc -> score) over the docs both scored, with its stderr, 95% interval and p-value
    (scipy's `ttest_rel`): {n, difference, stderr, ci_low, ci_high, p_value}, None where n is too small."""
    from scipy import stats  # deferred: scipy is slow to import and only comparisons need it

    docs = sorted(set(a) & set(b))
    n = len(docs)
    if n == 0:
        return {"n": 0, "difference": None, "stderr": None, "ci_low": None, "ci_high": None, "p_value": None}
    x, y = np.array([a[d] for d in docs]), np.array([b[d] for d in docs])
    diff = float(np.mean(x - y))
    if n < 2:
        return {"n": n, "difference": diff, "stderr": None, "ci_low": None, "ci_high": None, "p_value": None}
    stderr = float(np.std(x - y, ddof=1) / math.sqrt(n))
    p_value = float(stats.ttest_rel(x, y).pvalue) if stderr > 0 else (1.0 if diff == 0 else 0.0)
    return {"n": n, "difference": diff, "stderr": stderr, "ci_low": diff - Z95 * stderr,
            "ci_high": diff + Z95 * stderr, "p_value": p_value}


def history_delta(value: float, stderr: float | None, past: float, past_stderr: float | None) -> dict[str, Any]:
    """{delta, stderr, p_value} of value - past: the two standard errors combined as independent and a
    two-sided normal p-value; stderr and p_value None when either standard error is unknown."""
    from scipy import stats  # deferred: scipy is slow to import and only comparisons need it

    delta = value - past
    if stderr is None or past_stderr is None:
        return {"delta": delta, "stderr": None, "p_value": None}
    combined = math.sqrt(stderr ** 2 + past_stderr ** 2)
    p_value = float(2 * stats.norm.sf(abs(delta) / combined)) if combined > 0 else (1.0 if delta == 0 else 0.0)
    return {"delta": delta, "stderr": combined, "p_value": p_value}


def model_args_dtype(model_args: Any) -> str | None:
    """The dtype an imported results file's `model_args` names (a dict, or lm-eval's "k=v,k=v" string);
    None when it names none (then lm-eval's hf backend loaded the checkpoint's own dtype)."""
    if isinstance(model_args, dict):
        value = model_args.get("dtype") or model_args.get("torch_dtype")
    elif isinstance(model_args, str):
        pairs = dict(p.split("=", 1) for p in model_args.split(",") if "=" in p)
        value = pairs.get("dtype") or pairs.get("torch_dtype")
    else:
        value = None
    return str(value).removeprefix("torch.") if value else None


def partition_doc_scores(lake: Lake, run: t.Run, part: t.RunPartition) -> dict[tuple[str, str], dict[int, float]]:
    """Per (metric, filter) of a partition's grades, doc id -> score (corpus metrics left out: they are not
    means of per-doc scores)."""
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for doc_id, scores in doc_scores(lake, run, part.model_key, part.task_key).items():
        for key, score in scores.items():
            metric, filt = key.split(",", 1)
            # corpus metrics are not means of per-doc scores: a per-doc pairing says nothing about them
            if metric not in CORPUS_METRICS:
                out[(metric, filt)][doc_id] = score
    return out


def baseline_metrics(catalog: Catalog, run_id: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """The newest imported result per (run model, task id, metric, filter) of a run's suite: a model's
    history is what was imported under its name or its registered path. Values {historical_run_id,
    value, stderr, dtype (from the results file's model_args)}. Raises NotFound for an unknown run."""
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        if run is None:
            raise NotFound("run", run_id)
        task_ids = list(set(s.scalars(select(t.RunPartition.task_id).where(t.RunPartition.run_id == run_id))))
        aliases = {}  # a partition's model -> the names its imported results may carry
        for m in run.models:
            row = s.get(t.Model, m)
            aliases[m] = {m, (row.options or {}).get("path") if row is not None else None} - {None}
        history = s.execute(select(t.HistoricalRun.id, t.HistoricalRun.model, t.HistoricalRun.evaluated_at,
                                   t.HistoricalMetric.task_id, t.HistoricalMetric.metric, t.HistoricalMetric.filter,
                                   t.HistoricalMetric.value, t.HistoricalMetric.stderr, t.HistoricalRun.model_args)
                            .join(t.HistoricalMetric, t.HistoricalMetric.run_id == t.HistoricalRun.id)
                            .where(t.HistoricalRun.suite_id == run.suite_id,
                                   t.HistoricalMetric.task_id.in_(task_ids))).all()
    # the task id column is nullable, but the query keeps only the run's tasks
    latest: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for hrun_id, hmodel, evaluated_at, task_id, metric, filt, value, stderr, model_args in history:
        for m, names_of_m in aliases.items():
            if hmodel in names_of_m and value is not None:
                hkey = (m, task_id, metric, filt)
                if hkey not in latest or (evaluated_at or 0) > (latest[hkey]["evaluated_at"] or 0):
                    latest[hkey] = {"evaluated_at": evaluated_at, "historical_run_id": hrun_id, "value": value,
                                    "stderr": stderr, "dtype": model_args_dtype(model_args)}
    return latest


def run_comparisons(catalog: Catalog, lake: Lake, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """{"pairs": [...], "history": [...]} for a run whose partitions have grades and metrics. `pairs`: per
    task, two models and (metric, filter) with per-doc scores, paired_difference's fields; `history`: per
    model, task and (metric, filter) with an imported result, the value now and then, dtypes and
    history_delta's fields. Raises NotFound for an unknown run."""
    latest = baseline_metrics(catalog, run_id)
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        if run is None:
            raise NotFound("run", run_id)
        parts = list(s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)
                               .order_by(t.RunPartition.task_key, t.RunPartition.model)))
        names = {p.task_id: cast(t.Task, s.get(t.Task, p.task_id)).name for p in parts}  # foreign key
        engines = {p.model: (p.engine or {}).get("dtype") for p in parts}
        for p in parts:
            s.expunge(p)
        s.expunge(run)
    by_task: dict[str, list[t.RunPartition]] = defaultdict(list)
    for p in parts:
        by_task[p.task_id].append(p)
    pairs = []
    for task_id, task_parts in by_task.items():
        scores = {p.model: partition_doc_scores(lake, run, p) for p in task_parts}
        for a, b in combinations([p.model for p in task_parts], 2):
            for key in sorted(set(scores[a]) & set(scores[b])):
                pairs.append({"task_id": task_id, "task": names[task_id], "metric": key[0], "filter": key[1],
                              "model_a": a, "model_b": b, **paired_difference(scores[a][key], scores[b][key])})
    deltas = []
    metrics = run.metrics or {}
    for (m, task_id, metric, filt), past in sorted(latest.items()):
        now_ = (metrics.get(m, {}).get(names[task_id], {}) or {}).get(f"{metric},{filt}")
        if now_ and now_.get("value") is not None:
            deltas.append({"model": m, "task_id": task_id, "task": names[task_id], "metric": metric, "filter": filt,
                           "value": now_["value"], "historical_value": past["value"],
                           "historical_stderr": past["stderr"], "historical_run_id": past["historical_run_id"],
                           "dtype": engines.get(m), "historical_dtype": past["dtype"],
                           **history_delta(now_["value"], now_.get("stderr"), past["value"], past["stderr"])})
    return {"pairs": pairs, "history": deltas}
