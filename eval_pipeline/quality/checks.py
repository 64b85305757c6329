"""Data checks built on Great Expectations 1.x (GX Core, ephemeral context), as plain functions.

Each returns a Validation the Dagster asset checks turn into results; GX is imported lazily (~2 s).
"""
from __future__ import annotations

import functools
import math
import os
import threading
from collections import Counter
from collections.abc import Mapping
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


def _failed(check: str, e: Exception) -> Validation:
    return Validation(False, 0, note=f"{check} could not evaluate the data: {type(e).__name__}: {e}")


def never_raises(check: Callable[..., Validation]) -> Callable[..., Validation]:
    """A check that meets a frame it cannot evaluate fails with the reason instead of raising: an asset
    check's exception would hide every other partition's result."""
    @functools.wraps(check)
    def guarded(*args: Any, **kwargs: Any) -> Validation:
        try:
            return check(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            return _failed(check.__name__, e)
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


# The column that tags each row with its partition when partitions are validated together.
PARTITION = "__partition__"
# Failed expectations are run again with each unexpected row's partition (GX's `unexpected_index_list`).
_LOCATE = {"result_format": "COMPLETE", "unexpected_index_column_names": [PARTITION],
           "return_unexpected_index_query": False}
_OK = Validation(True, 0)


def _run_suite(df: pd.DataFrame, expectations: list[Any], result_format: Any) -> Any:
    gx = _gx()
    with _gx_lock:  # one context per process; GX's objects are not made for threads
        batch_def = _frame_batches()
        suite = gx.ExpectationSuite(name="checks")
        for e in expectations:
            suite.add_expectation(e)
        return batch_def.get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format=result_format)


def _label(config: Any) -> str:
    kwargs = config.kwargs
    columns = kwargs.get("column") or kwargs.get("column_list") or [kwargs.get("column_A"), kwargs.get("column_B")]
    if isinstance(columns, list):
        columns = [c for c in columns if c != PARTITION]
    return f"{config.type}({columns})"


def validate_partitions(frames: Mapping[str, pd.DataFrame], expectations: Callable[[], list[Any]]
                        ) -> dict[str, Validation]:
    """Each frame of `frames` (partition key -> rows) validated against the expectations as if on its own,
    in one GX validation of their concatenation, each row tagged with its key in the column PARTITION.
    GX's cost per validation (20-60 ms here, whatever the rows) paid once per partition was most of a
    check step's time. Only row-level expectations keep their per-frame meaning this way: column map and
    column pair expectations, and uniqueness over PARTITION plus the columns. `expectations` makes them
    (GX binds an expectation to its suite). A failed expectation is run again with GX's
    `unexpected_index_list` to count each partition's unexpected rows (one GX could not evaluate over the
    concatenation, partition by partition). Returns {key: Validation}, `evaluated` counting every
    expectation."""
    if not frames:
        return {}
    df = pd.concat([frame.assign(**{PARTITION: key}) for key, frame in frames.items()], ignore_index=True)
    made = expectations()
    checked = _run_suite(df, made, "BOOLEAN_ONLY")
    # GX orders results its own way: the failed ones are known by their configuration, not position
    failed = [r.expectation_config.to_domain_obj() for r in checked.results if not r.success]
    failures: dict[str, list[dict[str, Any]]] = {key: [] for key in frames}
    if failed:
        for r in _run_suite(df, failed, _LOCATE).results:
            unexpected = (r.result or {}).get("unexpected_index_list")
            counts = (_counted_alone(frames, r.expectation_config) if unexpected is None  # not evaluated
                      else Counter(row[PARTITION] for row in unexpected))
            for key, n in counts.items():
                failures[key].append({"expectation": _label(r.expectation_config), "unexpected": n})
    return {key: Validation(not found, len(made), found) for key, found in failures.items()}


def _counted_alone(frames: Mapping[str, pd.DataFrame], config: Any) -> dict[str, int | None]:
    """Each failing partition's unexpected rows for one expectation GX could not evaluate over the
    concatenation (a partition whose column has another type than the others' makes the concatenated
    column one the comparison rejects), each partition validated alone so that one partition's data fails
    no other; None where it cannot be evaluated alone either."""
    counts: dict[str, int | None] = {}
    for key, frame in frames.items():
        r = _run_suite(frame.assign(**{PARTITION: key}), [config.to_domain_obj()], _LOCATE).results[0]
        if not r.success:
            found = (r.result or {}).get("unexpected_index_list")
            counts[key] = None if found is None else len(found)
    return counts


def _validate(df: pd.DataFrame, expectations: Callable[[], list[Any]]) -> Validation:
    return validate_partitions({"": df}, expectations)[""]


def _guarded_batch(check: str, frames: Mapping[str, pd.DataFrame], expectations: Callable[[], list[Any]]
                   ) -> dict[str, Validation]:
    """validate_partitions, where GX failing as a whole fails each partition with the reason."""
    try:
        return validate_partitions(frames, expectations)
    except Exception as e:  # noqa: BLE001
        return {key: _failed(check, e) for key in frames}


@never_raises
def check_samples(samples: pd.DataFrame) -> Validation:
    """Imported samples (run_id, task, doc_id, filter, target, score_values): doc_id present, one row per
    (run, task, doc, filter), targets, finite scores."""
    ex = _expectations()
    df = samples.assign(target=samples["target"].where(samples["target"] != "null"),
                        scores_finite=[all(map(math.isfinite, row)) for row in samples["score_values"]])
    return _validate(df, lambda: [
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
    return _validate(df, lambda: [_expectations().ExpectColumnValuesToBeInSet(column="recomputed_matches",
                                                                              value_set=[True])])


@never_raises
def check_suite_inputs(tasks: pd.DataFrame, inputs: pd.DataFrame) -> Validation:
    """A suite version: every task has inputs (`tasks`.has_inputs), prompts are non-empty, doc ids are unique
    per task (`inputs`: task, doc_id, prompt)."""
    ex = _expectations()
    has_inputs = _validate(tasks, lambda: [ex.ExpectColumnValuesToBeInSet(column="has_inputs", value_set=[True])])
    if inputs.empty:
        return has_inputs
    rows = _validate(inputs, lambda: [
        ex.ExpectColumnValueLengthsToBeBetween(column="prompt", min_value=1),
        ex.ExpectCompoundColumnsToBeUnique(column_list=["task", "doc_id"]),
    ])
    return _merge(has_inputs, rows)


def _merge(*validations: Validation) -> Validation:
    return Validation(all(v.success for v in validations), sum(v.evaluated for v in validations),
                      [f for v in validations for f in v.failures])


def check_generations_by_partition(partitions: Mapping[str, tuple[pd.DataFrame, int]]) -> dict[str, Validation]:
    """Each partition's generations (key -> (rows with request_index, planned requests)): exactly one row
    per planned request: as many rows as planned, request_index unique and within 0..planned-1."""
    ex = _expectations()
    counts, indexes, out = {}, {}, {}
    for key, (rows, planned) in partitions.items():
        try:
            indexes[key] = pd.DataFrame({"request_index": rows["request_index"], "last_index": max(planned - 1, 0)})
            counts[key] = pd.DataFrame({"rows": [len(rows)], "planned": [planned]})
        except Exception as e:  # noqa: BLE001
            out[key] = _failed("check_generations", e)
    counted = _guarded_batch("check_generations", counts, lambda: [
        ex.ExpectColumnPairValuesToBeEqual(column_A="rows", column_B="planned")])
    indexed = _guarded_batch("check_generations", {k: indexes[k] for k in counted}, lambda: [
        # a missing request_index is skipped, as the column expectations these replace skip it
        ex.ExpectCompoundColumnsToBeUnique(column_list=[PARTITION, "request_index"],
                                           ignore_row_if="any_value_is_missing"),
        ex.ExpectColumnValuesToBeBetween(column="request_index", min_value=0),
        ex.ExpectColumnPairValuesAToBeGreaterThanB(column_A="last_index", column_B="request_index", or_equal=True,
                                                   ignore_row_if="either_value_is_missing"),
    ])
    out.update({key: _merge(counted[key], indexed[key]) for key in counted})
    return {key: out[key] for key in partitions}


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


def check_generation_health_by_partition(partitions: Mapping[str, pd.DataFrame], max_failed_rate: float,
                                         max_empty_rate: float) -> dict[str, Validation]:
    """Each partition's failed requests and empty outputs (key -> generation rows; see generation_rates)
    at most their thresholds (fractions of the partition's rows). A partition without rows passes with
    nothing evaluated."""
    ex = _expectations()
    rates, out = {}, {}
    for key, rows in partitions.items():
        try:
            if rows.empty:
                out[key] = _OK
            else:
                rates[key] = pd.DataFrame([generation_rates(rows)])
        except Exception as e:  # noqa: BLE001
            out[key] = _failed("check_generation_health", e)
    out.update(_guarded_batch("check_generation_health", rates, lambda: [
        ex.ExpectColumnValuesToBeBetween(column="failed_rate", max_value=max_failed_rate),
        ex.ExpectColumnValuesToBeBetween(column="empty_rate", max_value=max_empty_rate),
    ]))
    return {key: out[key] for key in partitions}


# The range of one sample's score per metric (None: unbounded on that side).
SCORE_RANGES = {
    **{m: (0, 1) for m in ["acc", "acc_norm", "acc_bytes", "exact_match", "numeric_match", "f1", "mcc",
                           "judge_score", "human_score"]},
    "bleu": (0, 100), "chrf": (0, 100), "chrf++": (0, 100), "ter": (0, None), "perplexity": (None, 0),
    "embedding_similarity": (-1, 1), "word_perplexity": (1, None), "byte_perplexity": (1, None),
    "bits_per_byte": (0, None),
}


def _grade_frames(grades: pd.DataFrame) -> Validation | tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A partition's grades as the three frames its expectations read (keys, scores in range, judge
    grades), or the outcome when there is nothing for them to read."""
    if grades.empty:
        return Validation(True, 0, note="no grades: nothing was graded by rule (predict-only task, or no samples)")
    numbers = pd.to_numeric(grades["score"], errors="coerce")
    if (numbers.isna() & grades["score"].notna()).any():
        return Validation(False, 0, note="scores that are not numbers: "
                                         f"{grades['score'][numbers.isna() & grades['score'].notna()].iloc[0]!r}")
    if numbers.isna().all():
        first = grades["error"].dropna().iloc[0] if grades["error"].notna().any() else "none given"
        return Validation(True, 0, note=f"no scores to check: all {len(grades)} grades carry an error ({first})")
    scored = grades.assign(score=numbers)[numbers.notna()]
    low = scored["metric"].map(lambda m: SCORE_RANGES.get(m, (None, None))[0])
    high = scored["metric"].map(lambda m: SCORE_RANGES.get(m, (None, None))[1])
    in_range = (low.isna() | (scored["score"] >= low.fillna(0))) & (high.isna() | (scored["score"] <= high.fillna(0)))
    judged = grades[grades["grader"].str.startswith("judge:")]
    return (grades[["doc_id", "filter", "metric"]], pd.DataFrame({"in_range": in_range.astype(bool)}),
            judged[["rubric_sha256"]])


def check_grades_by_partition(partitions: Mapping[str, pd.DataFrame]) -> dict[str, Validation]:
    """Each partition's grades (key -> grades): one per (doc, filter, metric); scores within their metric's
    range (SCORE_RANGES); a rubric hash on every judge grade."""
    ex = _expectations()
    keys, in_range, judged, out = {}, {}, {}, {}
    for key, grades in partitions.items():
        try:
            frames = _grade_frames(grades)
        except Exception as e:  # noqa: BLE001
            frames = _failed("check_grades", e)
        if isinstance(frames, Validation):
            out[key] = frames
            continue
        keys[key], in_range[key] = frames[0], frames[1]
        if not frames[2].empty:
            judged[key] = frames[2]
    unique = _guarded_batch("check_grades", keys, lambda: [
        ex.ExpectCompoundColumnsToBeUnique(column_list=[PARTITION, "doc_id", "filter", "metric"])])
    ranged = _guarded_batch("check_grades", in_range, lambda: [
        ex.ExpectColumnValuesToBeInSet(column="in_range", value_set=[True])])
    rubrics = _guarded_batch("check_grades", judged, lambda: [
        ex.ExpectColumnValuesToNotBeNull(column="rubric_sha256")])
    out.update({key: _merge(unique[key], ranged[key], rubrics.get(key, _OK)) for key in keys})
    return {key: out[key] for key in partitions}


def check_grades(grades: pd.DataFrame) -> Validation:
    """One partition's grades: see check_grades_by_partition."""
    return check_grades_by_partition({"": grades})[""]


def _metric_frames(metrics: pd.DataFrame, grades: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A partition's metrics as its expectations read them: n against the graded rows per (metric, filter),
    and the rows with an interval (stderr, whether it holds the value)."""
    graded = (grades[grades["error"].isna() & grades["score"].notna()]
              .groupby(["metric", "filter"]).size().rename("graded").reset_index())
    df = metrics.merge(graded, on=["metric", "filter"], how="left").fillna({"graded": 0})
    # lm-eval gives some aggregates no stderr (weighted perplexities): no interval to hold them then
    scored = df[df["value"].notna() & df["ci_low"].notna() & df["ci_high"].notna()]
    return (pd.DataFrame({"n_matches": df["n"] == df["graded"]}),
            pd.DataFrame({"stderr": scored["stderr"],
                          "ci_holds": (scored["ci_low"] <= scored["value"]) & (scored["value"] <= scored["ci_high"])}))


def check_metrics_by_partition(partitions: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]]) -> dict[str, Validation]:
    """Each partition's metrics (key -> (metrics, grades)): n equals the graded rows, and where there is an
    interval, stderr >= 0 and the 95% interval holds the value."""
    ex = _expectations()
    counts, intervals, out = {}, {}, {}
    for key, (metrics, grades) in partitions.items():
        if metrics.empty:
            out[key] = _OK
            continue
        try:
            counts[key], scored = _metric_frames(metrics, grades)
        except Exception as e:  # noqa: BLE001
            out[key] = _failed("check_metrics", e)
            continue
        if not scored.empty:
            intervals[key] = scored
    counted = _guarded_batch("check_metrics", counts, lambda: [
        ex.ExpectColumnValuesToBeInSet(column="n_matches", value_set=[True])])
    held = _guarded_batch("check_metrics", intervals, lambda: [
        ex.ExpectColumnValuesToBeBetween(column="stderr", min_value=0),
        ex.ExpectColumnValuesToBeInSet(column="ci_holds", value_set=[True]),
    ])
    out.update({key: _merge(counted[key], held.get(key, _OK)) for key in counts})
    return {key: out[key] for key in partitions}


def check_metrics(metrics: pd.DataFrame, grades: pd.DataFrame) -> Validation:
    """One partition's metrics: see check_metrics_by_partition."""
    return check_metrics_by_partition({"": (metrics, grades)})[""]
