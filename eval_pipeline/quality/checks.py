"""Data checks built on Great Expectations 1.x (GX Core, ephemeral context), as plain functions.

Each returns a Validation the Dagster asset checks turn into results; GX is imported lazily (~2 s).
"""
from __future__ import annotations

import functools
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd


@dataclass
class Validation:
    """A check's outcome: success, the number of expectations evaluated, the failed ones ({"expectation":
    "<type>(<column>)", "unexpected": count or None}), and a note when the check did not run its expectations."""

    success: bool
    evaluated: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None  # why a check was failed or skipped without running its expectations

    def summary(self) -> str:
        """One line for the check's description: the note, "all N expectations met", or the failures."""
        if self.note:
            return self.note
        if self.success:
            return f"all {self.evaluated} expectations met"
        return "; ".join(f"{f['expectation']} failed ({f['unexpected']} unexpected)" for f in self.failures)


def never_raises(check: Callable[..., Validation]) -> Callable[..., Validation]:
    """A check that meets a frame it cannot evaluate fails with the reason instead of raising: an asset
    check's exception would hide every other partition's result."""
    @functools.wraps(check)
    def guarded(*args: Any, **kwargs: Any) -> Validation:
        try:
            return check(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            return Validation(False, 0, note=f"{check.__name__} could not evaluate the data: {type(e).__name__}: {e}")
    return guarded


def _expectations() -> Any:
    """GX's expectation classes (`gx.expectations`)."""
    return _gx().expectations


def _gx() -> Any:
    """The great_expectations module, imported on first use: GX takes seconds to import, and only check
    steps need it."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # deferred: see the docstring

    return gx


_gx_lock = threading.Lock()


@functools.cache
def _frame_batches() -> Any:
    """This process's ephemeral GX context and its whole-dataframe batch definition, made once: making them
    per validation was half of a check's time (py-spy on a check step of bench/scale)."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig  # deferred: GX (see _gx)

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx.data_sources.add_pandas("frame").add_dataframe_asset("rows").add_batch_definition_whole_dataframe("all")


def _validate(df: pd.DataFrame, expectations: list[Any]) -> Validation:
    gx = _gx()
    with _gx_lock:  # one context per process; GX's objects are not made for threads
        batch_def = _frame_batches()
        suite = gx.ExpectationSuite(name="checks")
        for e in expectations:
            suite.add_expectation(e)
        result = batch_def.get_batch(batch_parameters={"dataframe": df}).validate(suite)
    failures = []
    for r in result.results:
        if not r.success:
            cfg = r.expectation_config
            failures.append({
                "expectation": f"{cfg.type}({cfg.kwargs.get('column') or cfg.kwargs.get('column_list')})",
                "unexpected": (r.result or {}).get("unexpected_count"),
            })
    return Validation(bool(result.success), len(result.results), failures)


@never_raises
def check_samples(samples: pd.DataFrame) -> Validation:
    """Imported samples (run_id, task, doc_id, filter, target, score_values): doc_id present, one row per
    (run, task, doc, filter), targets, finite scores."""
    ex = _expectations()
    df = samples.assign(target=samples["target"].where(samples["target"] != "null"),
                        scores_finite=[all(map(math.isfinite, row)) for row in samples["score_values"]])
    return _validate(df, [
        ex.ExpectColumnValuesToNotBeNull(column="doc_id"),
        ex.ExpectCompoundColumnsToBeUnique(column_list=["run_id", "task", "doc_id", "filter"]),
        ex.ExpectColumnValuesToNotBeNull(column="target"),
        ex.ExpectColumnValuesToBeInSet(column="scores_finite", value_set=[True]),
    ])


@never_raises
def check_agreement(metrics: pd.DataFrame) -> Validation:
    """Reported mean metrics equal the mean of their per-sample values (within 1e-6): the imported metrics'
    `recomputed_matches`, where a mean was `recomputed`."""
    df = metrics[metrics["recomputed"].notna()]
    if df.empty:
        return Validation(True, 0)
    return _validate(df, [_expectations().ExpectColumnValuesToBeInSet(column="recomputed_matches",
                                                                      value_set=[True])])


@never_raises
def check_suite_inputs(tasks: pd.DataFrame, inputs: pd.DataFrame) -> Validation:
    """A suite version: every task has inputs (`tasks`.has_inputs), prompts are non-empty, doc ids are unique
    per task (`inputs`: task, doc_id, prompt)."""
    ex = _expectations()
    has_inputs = _validate(tasks, [ex.ExpectColumnValuesToBeInSet(column="has_inputs", value_set=[True])])
    if inputs.empty:
        return has_inputs
    rows = _validate(inputs, [
        ex.ExpectColumnValueLengthsToBeBetween(column="prompt", min_value=1),
        ex.ExpectCompoundColumnsToBeUnique(column_list=["task", "doc_id"]),
    ])
    return _merge(has_inputs, rows)


def _merge(a: Validation, b: Validation) -> Validation:
    return Validation(a.success and b.success, a.evaluated + b.evaluated, a.failures + b.failures)


@never_raises
def check_generations(rows: pd.DataFrame, planned: int) -> Validation:
    """A partition's generations: exactly one row per planned request (request_index 0..planned-1, unique)."""
    ex = _expectations()
    return _validate(rows, [
        ex.ExpectTableRowCountToEqual(value=planned),
        ex.ExpectColumnValuesToBeUnique(column="request_index"),
        ex.ExpectColumnValuesToBeBetween(column="request_index", min_value=0, max_value=max(planned - 1, 0)),
    ])


def generation_rates(rows: pd.DataFrame) -> dict[str, float | int]:
    """A partition's generation rows measured as the health check sees them: requests, failed_rate (rows
    with an error) and empty_rate (generate_until rows without error whose output is empty), fractions
    of all rows (0.0 for no rows)."""
    n = len(rows)
    if n == 0:
        return {"requests": 0, "failed_rate": 0.0, "empty_rate": 0.0}
    ok = rows["error"].isna()
    empty = (rows["request_kind"] == "generate_until") & ok & (rows["output_text"].fillna("") == "")
    return {"requests": n, "failed_rate": float((~ok).sum() / n), "empty_rate": float(empty.sum() / n)}


@never_raises
def check_generation_health(rows: pd.DataFrame, max_failed_rate: float, max_empty_rate: float) -> Validation:
    """Failed requests and empty outputs stay under their thresholds (fractions of the partition)."""
    ex = _expectations()
    if rows.empty:
        return Validation(True, 0)
    df = rows.assign(ok=rows["error"].isna(),
                     empty=(rows["request_kind"] == "generate_until") & rows["error"].isna()
                     & (rows["output_text"].fillna("") == ""))
    return _validate(df, [
        ex.ExpectColumnValuesToBeInSet(column="ok", value_set=[True], mostly=1 - max_failed_rate),
        ex.ExpectColumnValuesToBeInSet(column="empty", value_set=[False], mostly=1 - max_empty_rate),
    ])


# The range of one sample's score per metric (None: unbounded on that side).
SCORE_RANGES = {
    **{m: (0, 1) for m in ["acc", "acc_norm", "acc_bytes", "exact_match", "numeric_match", "f1", "mcc",
                           "judge_score", "human_score"]},
    "bleu": (0, 100), "chrf": (0, 100), "chrf++": (0, 100), "ter": (0, None), "perplexity": (None, 0),
    "embedding_similarity": (-1, 1), "word_perplexity": (1, None), "byte_perplexity": (1, None),
    "bits_per_byte": (0, None),
}


@never_raises
def check_grades(grades: pd.DataFrame) -> Validation:
    """A partition's grades: one per (doc, filter, metric); scores within their metric's range; a
    rubric hash on every judge grade."""
    ex = _expectations()
    if grades.empty:
        return Validation(True, 0, note="no grades: nothing was graded by rule (predict-only task, or no samples)")
    numbers = pd.to_numeric(grades["score"], errors="coerce")
    if (numbers.isna() & grades["score"].notna()).any():
        return Validation(False, 0, note="scores that are not numbers: "
                                         f"{grades['score'][numbers.isna() & grades['score'].notna()].iloc[0]!r}")
    grades = grades.assign(score=numbers)
    if numbers.isna().all():
        first = grades["error"].dropna().iloc[0] if grades["error"].notna().any() else "none given"
        return Validation(True, 0, note=f"no scores to check: all {len(grades)} grades carry an error ({first})")
    scored = grades[grades["score"].notna()]
    low = scored["metric"].map(lambda m: SCORE_RANGES.get(m, (None, None))[0])
    high = scored["metric"].map(lambda m: SCORE_RANGES.get(m, (None, None))[1])
    in_range = (low.isna() | (scored["score"] >= low.fillna(0))) & (high.isna() | (scored["score"] <= high.fillna(0)))
    judged = grades[grades["grader"].str.startswith("judge:")]
    return _merge(_merge(
        _validate(grades, [ex.ExpectCompoundColumnsToBeUnique(column_list=["doc_id", "filter", "metric"])]),
        _validate(pd.DataFrame({"in_range": in_range.astype(bool)}),
                  [ex.ExpectColumnValuesToBeInSet(column="in_range", value_set=[True])])
        if not scored.empty else Validation(True, 0)),
        _validate(judged, [ex.ExpectColumnValuesToNotBeNull(column="rubric_sha256")])
        if not judged.empty else Validation(True, 0))


@never_raises
def check_metrics(metrics: pd.DataFrame, grades: pd.DataFrame) -> Validation:
    """A partition's metrics: stderr >= 0, n equals the graded rows, the 95% interval holds the value."""
    ex = _expectations()
    if metrics.empty:
        return Validation(True, 0)
    graded = (grades[grades["error"].isna() & grades["score"].notna()]
              .groupby(["metric", "filter"]).size().rename("graded").reset_index())
    df = metrics.merge(graded, on=["metric", "filter"], how="left").fillna({"graded": 0})
    scored = df[df["value"].notna()]
    df = df.assign(n_matches=df["n"] == df["graded"])
    checks = [ex.ExpectColumnValuesToBeInSet(column="n_matches", value_set=[True])]
    result = _validate(df, checks)
    if scored.empty:
        return result
    # lm-eval gives some aggregates no stderr (weighted perplexities): no interval to hold them then
    scored = scored[scored["ci_low"].notna() & scored["ci_high"].notna()]
    if scored.empty:
        return result
    scored = scored.assign(ci_holds=(scored["ci_low"] <= scored["value"]) & (scored["value"] <= scored["ci_high"]))
    return _merge(result, _validate(scored, [
        ex.ExpectColumnValuesToBeBetween(column="stderr", min_value=0),
        ex.ExpectColumnValuesToBeInSet(column="ci_holds", value_set=[True]),
    ]))
