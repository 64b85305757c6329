"""Metrics of a (model, task) partition from its grades: per (metric, filter) the aggregate, its
standard error, a 95% interval, n and the number of samples that could not be graded. The run's
`metrics` object gathers them.

Means use lm-eval's standard error of a mean (sample standard deviation over sqrt(n)) and Wilson's
score interval when every score is 0 or 1 (a proportion: it stays within [0, 1] and is not degenerate
at 0 or 1), else value +- 1.96 stderr. Corpus metrics (bleu, chrf, ter, f1, mcc, perplexity) are
lm-eval's aggregates of the per-sample statistics, with a bootstrap standard error and value +- 1.96
stderr clipped to the metric's range."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
from sqlalchemy import select

from eval_pipeline.grading.grade_files import active_grade_files
from eval_pipeline.results.bootstrap import bootstrap_stderr
from eval_pipeline.runs.records import not_graded
from eval_pipeline.runs.request import DEFAULT_BOOTSTRAP_ITERS
from eval_pipeline.scoring.corpus import CORPUS_METRICS, corpus_value
from eval_pipeline.scoring.gradability import REFUSED
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake

Z95 = 1.959963984540054
METRICS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("task_id", pa.string()), ("task", pa.string()),
    ("metric", pa.string()), ("filter", pa.string()), ("value", pa.float64()), ("stderr", pa.float64()),
    ("ci_low", pa.float64()), ("ci_high", pa.float64()), ("n", pa.int64()), ("failed", pa.int64()),
])


def metrics_path(run_id: str, model_key: str, task_key: str) -> str:
    """The lake path (relative to its root) of one partition's metrics file."""
    return f"metrics/{run_id}/{model_key}/{task_key}/metrics.parquet"


def summarise(scores: list[float]) -> dict[str, Any]:
    """{value, stderr, ci_low, ci_high, n} of per-sample scores: the mean and lm-eval's standard error of it
    (lm_eval/api/metrics.py `mean`, `mean_stderr`; 0 for n < 2, where lm-eval reports N/A), with Wilson's 95%
    interval when every score is 0 or 1, else value +- 1.96 stderr. All None (n 0) without scores."""
    from lm_eval.api.metrics import mean, mean_stderr  # deferred: lm_eval takes seconds to import

    n = len(scores)
    if n == 0:
        return {"value": None, "stderr": None, "ci_low": None, "ci_high": None, "n": 0}
    value = float(mean(scores))
    stderr = float(mean_stderr(scores)) if n > 1 else 0.0
    if all(s in (0.0, 1.0) for s in scores):
        low, high = wilson_interval(value, n)
    else:
        low, high = value - Z95 * stderr, value + Z95 * stderr
    return {"value": value, "stderr": stderr, "ci_low": low, "ci_high": high, "n": n}


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """(low, high) of Wilson's score interval for a proportion p of n samples (95% for the default z),
    within [0, 1] and always holding p."""
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At p = 0 or 1 the bound equals p exactly in theory; rounding must not put p outside.
    return min(max(0.0, centre - half), p), max(min(1.0, centre + half), p)


def summarise_corpus(name: str, stats: np.ndarray, iters: int) -> dict[str, Any]:
    """{value, stderr, ci_low, ci_high, n} of corpus metric `name` (a key of CORPUS_METRICS) from its
    per-sample statistics (n rows): lm-eval's aggregate, a bootstrap stderr of at most `iters` resamples (the
    metric may cap them), value +- 1.96 stderr clipped to the metric's range. stderr and interval are None
    where lm-eval reports no stderr; everything None (n 0) without samples."""
    metric = CORPUS_METRICS[name]
    n = len(stats)
    if n == 0:
        return {"value": None, "stderr": None, "ci_low": None, "ci_high": None, "n": 0}
    value = corpus_value(name, stats)
    if not metric.bootstrap:  # lm-eval reports no stderr here ("N/A"): neither do we, nor an interval from one
        return {"value": value, "stderr": None, "ci_low": None, "ci_high": None, "n": n}
    iters = min(iters, metric.max_iters or iters)
    stderr = bootstrap_stderr(stats, metric.value_of_sums, iters)
    low, high = value - Z95 * stderr, value + Z95 * stderr
    if metric.low is not None:
        low = max(low, metric.low)
    if metric.high is not None:
        high = min(high, metric.high)
    return {"value": value, "stderr": stderr, "ci_low": low, "ci_high": high, "n": n}


def partition_metrics(grades: pa.Table, ident: dict[str, str], bootstrap_iters: int) -> pa.Table:
    """One METRICS_SCHEMA row per (metric, filter) of a partition's grades (GRADES_SCHEMA rows): `ident`'s
    run_id, model, task_id and task, the summary of the graded scores (corpus metrics from their stats) and
    `failed`, the rows with an error or no finite score."""
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    stats: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    failed: dict[tuple[str, str], int] = defaultdict(int)
    for row in grades.select(["metric", "filter", "score", "error", "stats"]).to_pylist():
        key = (row["metric"], row["filter"])
        if row["error"] is None and row["score"] is not None and math.isfinite(row["score"]):
            scores[key].append(row["score"])
            if row["stats"] is not None:
                stats[key].append(row["stats"])
        else:
            failed[key] += 1
    rows = []
    for m, f in sorted(set(scores) | set(failed)):
        if m in CORPUS_METRICS:
            summary = summarise_corpus(m, np.array(stats[(m, f)], dtype=float), bootstrap_iters)
        else:
            summary = summarise(scores[(m, f)])
        rows.append({**ident, "metric": m, "filter": f, **summary, "failed": failed[(m, f)]})
    return pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)


def run_metrics_object(lake: Lake, paths: list[str], not_graded: Sequence[dict[str, Any]] = ()
                       ) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """model -> task -> "metric,filter" -> {value, stderr, ci_low, ci_high, n} (lm-eval's key style). A task
    graded by no rule has instead the key "not_gradable" (no comma: never a metric) -> {status, reason}.
    `paths` are partitions' metrics files (missing ones skipped); `not_graded` is runs.not_graded's list."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for path in paths:
        if not lake.exists(path):
            continue
        for r in lake.read_table(path).to_pylist():
            out.setdefault(r["model"], {}).setdefault(r["task"], {})[f"{r['metric']},{r['filter']}"] = {
                k: r[k] for k in ("value", "stderr", "ci_low", "ci_high", "n", "failed")}
    for entry in not_graded:
        out.setdefault(entry["model"], {}).setdefault(entry["task"], {})["not_gradable"] = {
            "status": entry["status"], "reason": entry["reason"]}
    return out


def write_partition_metrics(catalog: Catalog, lake: Lake, run_id: str, model: str, task_id: str) -> pa.Table:
    """Aggregate a partition's grades from the run's current graders and publish them (one atomic file;
    idempotent). Returns the metrics table (see partition_metrics). The partition must exist."""
    with catalog.session() as s:
        part, run = s.get(t.RunPartition, (run_id, model, task_id)), s.get(t.Run, run_id)
        assert part is not None and run is not None  # a partition being finished, and its run (foreign key)
        task_name, keys = cast(t.Task, s.get(t.Task, task_id)).name, (part.model_key, part.task_key)
        iters = run.settings.get("bootstrap_iters", DEFAULT_BOOTSTRAP_ITERS)
        paths = active_grade_files(lake, run, *keys)
        refused = (part.grading or {}).get("status") == REFUSED
    grades = pa.concat_tables([lake.read_table(p) for p in paths])
    if refused:  # no number under lm-eval's metric names: the task's reason stands in the metrics object
        grades = grades.filter(pa.compute.field("grader") != "rule")
    table = partition_metrics(grades, {"run_id": run_id, "model": model, "task_id": task_id, "task": task_name},
                              iters)
    lake.write_table(metrics_path(run_id, *keys), table)
    return table


def refresh_run_metrics(catalog: Catalog, lake: Lake, run_id: str) -> None:
    """Gather the partitions' metrics files into the run's `metrics` object again (after regrading); the
    run must exist."""
    with catalog.session() as s:
        parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)).all()
        cast(t.Run, s.get(t.Run, run_id)).metrics = run_metrics_object(  # callers pass an existing run
            lake, [metrics_path(run_id, p.model_key, p.task_key) for p in parts], not_graded(s, parts))
