"""A run at a glance (MKA1's eval.run.overview): one score, sample counts and tokens."""
from __future__ import annotations

from typing import Any, cast

import pyarrow.compute as pc

from eval_pipeline.runs import get_run
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.lake import Lake

HEADLINE = "reward"  # MKA1's default metric name: here each (model, task)'s first metric


def metric_entries(metrics: dict[str, Any] | None, metric: str = HEADLINE) -> list[dict[str, Any]]:
    """One entry ({value, stderr, ci_low, ci_high, n, failed}) per (model, task) of a run's metrics object:
    its first metric for the headline, else the first filter of `metric` (the metric name without a filter,
    as lm-eval's "metric,filter" keys start)."""
    out = []
    for tasks in (metrics or {}).values():
        for by_key in tasks.values():
            by_key = {k: v for k, v in by_key.items() if "," in k}  # "not_gradable" is a reason, not a metric
            if metric == HEADLINE:
                entry = next(iter(by_key.values()), None)
            else:
                entry = next((v for k, v in by_key.items() if k.split(",", 1)[0] == metric), None)
            if entry is not None:
                out.append(entry)
    return out


def headline_score(metrics: dict[str, Any] | None, metric: str = HEADLINE) -> float | None:
    """The sample-weighted mean of the entries' values (None when no entry has one)."""
    entries = [e for e in metric_entries(metrics, metric) if e.get("value") is not None]
    weight = sum(e.get("n") or 0 for e in entries)
    if not entries:
        return None
    if not weight:
        return cast(float, sum(e["value"] for e in entries) / len(entries))
    return cast(float, sum(e["value"] * (e.get("n") or 0) for e in entries) / weight)


def _retried(lake: Lake, run_id: str) -> int:
    """Failed requests that rerun-failed sent again (the failures kept in set-aside chunks)."""
    total = 0
    for path in lake.fs.glob(f"{lake.root}/generations/{run_id}/*/*/superseded/*.parquet"):
        errors = lake.read_table(path[len(lake.root) + 1:], columns=["error"]).column("error")
        total += len(errors) - pc.sum(pc.cast(pc.is_null(errors), "int64")).as_py()
    return total


def run_overview(catalog: Catalog, lake: Lake, run_id: str, *, metric: str = HEADLINE,
                 org_id: str | None = None) -> dict[str, Any]:
    """MKA1's `eval.run.overview` of a run: the sample-weighted headline score of `metric` (avg_reward),
    request counts as trials (errored: samples not gradable for the metric; retried: failures rerun-failed
    sent again), tokens and the generation cost (`cost`: runs.records.RunCost). Raises NotFound (also for a
    run of another org than `org_id`)."""
    run = get_run(catalog, run_id, org_id=org_id)
    counts = run["request_counts"]
    entries = metric_entries(run["metrics"], metric)
    return {
        "object": "eval.run.overview", "run_id": run["id"], "suite_id": run["suite_id"], "status": run["status"],
        "agent_name": None, "agent_version": None, "agent_effort": None, "models": run["models"],
        "metric": metric, "avg_reward": headline_score(run["metrics"], metric),
        "trials": {"total": counts["total"], "completed": counts["completed"], "failed": counts["failed"],
                   # samples generated but not gradable for this metric (e.g. an unparseable judge verdict)
                   "errored": sum(e.get("failed") or 0 for e in entries), "retried": _retried(lake, run["id"])},
        "cost_usd": None, "tokens": run["tokens"],
        # GPU-seconds, engine and wall seconds and tokens, in total and per model (cost_usd needs a price)
        "cost": run["cost"],
    }
