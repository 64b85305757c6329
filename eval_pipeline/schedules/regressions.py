"""Regression alerts for scheduled runs: each (model, task, metric, filter) of a run compared with the
schedule's previous completed run and with the suite's imported baseline for that model.

- Against the previous run, doc by doc where both runs have per-doc scores (a paired t-test: the docs are
  the same, so their shared variance drops out); for corpus metrics, unpaired, from the two standard
  errors (a two-sided normal test). The baseline is an imported aggregate, so that comparison is unpaired.
  With fewer than 2 samples, or two standard errors of 0, nothing is tested. A partition is compared with
  the previous run's only at the same task version: other inputs are other docs.
- The p-values of all of a run's comparisons are adjusted together with Benjamini-Hochberg (scipy's
  false_discovery_control), which bounds the expected share of false alarms among the flagged ones at
  `alpha` while keeping more power than Holm's family-wise bound over dozens of tasks and metrics.
- A regression is a change in the worse direction (lm-eval's higher_is_better; a metric whose direction
  nobody knows is compared but never flagged) whose adjusted p-value is under `alpha` and whose size is at
  least `min_drop` in the metric's own units."""
from __future__ import annotations

import math
from typing import Any, cast

from sqlalchemy import select

from eval_pipeline.results.comparisons import baseline_metrics, history_delta, paired_difference, partition_doc_scores
from eval_pipeline.results.metrics import metrics_path
from eval_pipeline.scoring.corpus import CORPUS_METRICS
from eval_pipeline.scoring.rules import higher_is_better
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake


def previous_completed_run(catalog: Catalog, run_id: str) -> str | None:
    """The latest completed run made before `run_id` by the same schedule (same origin); None for the
    first, or for a run no schedule made."""
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        if run is None or not run.origin.startswith(("schedule:", "nightly:")):
            return None
        return s.scalar(select(t.Run.id).where(t.Run.origin == run.origin, t.Run.status == "completed",
                                               t.Run.created_ns < run.created_ns, t.Run.id != run_id)
                        .order_by(t.Run.created_ns.desc()).limit(1))


def _partition_metrics(lake: Lake, run_id: str, part: t.RunPartition) -> dict[tuple[str, str], dict[str, Any]]:
    path = metrics_path(run_id, part.model_key, part.task_key)
    if not lake.exists(path):
        return {}
    return {(r["metric"], r["filter"]): r for r in lake.read_table(path).to_pylist() if r["value"] is not None}


def _compare(now: dict[str, Any], then_value: float, then_stderr: float | None,
             pairs: tuple[dict[int, float], dict[int, float]] | None) -> dict[str, Any]:
    """The difference now - then with its test: paired by doc when `pairs` gives at least 2 common docs,
    else unpaired from the two standard errors. Untested (p_value None) with fewer than 2 samples, or
    unpaired when both standard errors are 0 (lm-eval's stderr of one sample): nothing to test with."""
    if pairs is not None:
        p = paired_difference(*pairs)
        if p["p_value"] is not None:
            return {"difference": p["difference"], "stderr": p["stderr"], "p_value": p["p_value"], "n": p["n"],
                    "paired": True}
    d = history_delta(now["value"], now["stderr"], then_value, then_stderr)
    testable = (now["n"] or 0) >= 2 and d["stderr"] is not None and d["stderr"] > 0
    return {"difference": d["delta"], "stderr": d["stderr"], "p_value": d["p_value"] if testable else None,
            "n": now["n"], "paired": False}


def compare_run(catalog: Catalog, lake: Lake, run_id: str, *, alpha: float, min_drop: float
                ) -> tuple[str | None, list[dict[str, Any]]]:
    """(previous completed run of the schedule or None, comparisons). Each comparison: {model, task_id,
    task, partition_key, metric, filter, against: previous_run | baseline, against_id, value, against_value, difference
    (now - then), stderr, p_value, p_adjusted, paired, n, higher_is_better, regression}. Partitions
    without metrics yet are left out (the asset check calls this while the run works)."""
    from scipy.stats import false_discovery_control  # deferred: scipy is slow to import

    previous = previous_completed_run(catalog, run_id)
    baseline = baseline_metrics(catalog, run_id)
    with catalog.session() as s:
        run = cast(t.Run, s.get(t.Run, run_id))  # baseline_metrics raised NotFound otherwise
        parts = list(s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)
                               .order_by(t.RunPartition.model, t.RunPartition.task_key)))
        tasks = {p.task_id: cast(t.Task, s.get(t.Task, p.task_id)) for p in parts}
        prev_run = s.get(t.Run, previous) if previous else None
        prev_parts = {(p.model, p.task_id, p.task_version): p for p in s.scalars(
            select(t.RunPartition).where(t.RunPartition.run_id == previous))} if previous else {}
        s.expunge_all()
    out: list[dict[str, Any]] = []
    for part in parts:
        now_metrics = _partition_metrics(lake, run_id, part)
        if not now_metrics:
            continue
        task = tasks[part.task_id]
        base = {"model": part.model, "task_id": part.task_id, "task": task.name,
                "partition_key": f"{part.model_key}|{part.task_key}"}
        # the same task at another version has other docs: nothing to pair with, nothing to compare
        prev_part = prev_parts.get((part.model, part.task_id, part.task_version))
        if prev_run is not None and prev_part is not None:
            then_metrics = _partition_metrics(lake, prev_run.id, prev_part)
            now_docs = partition_doc_scores(lake, run, part)
            then_docs = partition_doc_scores(lake, prev_run, prev_part)
            for key, now in now_metrics.items():
                then = then_metrics.get(key)
                if then is None:
                    continue
                pairs = (now_docs[key], then_docs[key]) if key[0] not in CORPUS_METRICS and key in now_docs \
                    and key in then_docs else None
                out.append({**base, "metric": key[0], "filter": key[1], "against": "previous_run",
                            "against_id": prev_run.id, "value": now["value"], "against_value": then["value"],
                            **_compare(now, then["value"], then["stderr"], pairs)})
        for key, now in now_metrics.items():
            past = baseline.get((part.model, part.task_id, *key))
            if past is not None:
                out.append({**base, "metric": key[0], "filter": key[1], "against": "baseline",
                            "against_id": past["historical_run_id"], "value": now["value"],
                            "against_value": past["value"], **_compare(now, past["value"], past["stderr"], None)})
    tested = [c for c in out if c["p_value"] is not None and math.isfinite(c["p_value"])]
    adjusted = false_discovery_control([c["p_value"] for c in tested], method="bh") if tested else []
    for c, q in zip(tested, adjusted):
        c["p_adjusted"] = float(q)
    for c in out:
        c.setdefault("p_adjusted", None)
        hib = higher_is_better(tasks[c["task_id"]].metric_spec, c["metric"])
        drop = None if hib is None else (-c["difference"] if hib else c["difference"])
        c["higher_is_better"] = hib
        c["regression"] = bool(drop is not None and drop >= min_drop and c["p_adjusted"] is not None
                               and c["p_adjusted"] < alpha)
    return previous, out
