"""The Great Expectations checks of a Dagster run's partitions are validated together, in one GX validation
per check step: each partition's outcome must be what validating it alone gives, failures counted in the
partition they belong to and nowhere else."""
from __future__ import annotations

import pandas as pd
import pytest

from eval_pipeline.quality import checks


def _rows(n: int, errors: int = 0, empty: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"request_index": range(n), "request_kind": ["generate_until"] * n,
                         "error": ["backend said no"] * errors + [None] * (n - errors),
                         "output_text": [""] * empty + ["text"] * (n - empty)})


def _grades(n: int, **overrides) -> pd.DataFrame:
    frame = pd.DataFrame({"doc_id": range(n), "filter": ["none"] * n, "metric": ["exact_match"] * n,
                          "score": [1.0] * n, "error": [None] * n, "grader": ["rule"] * n, "rubric_sha256": [None] * n})
    return frame.assign(**overrides)


def _metrics(n: int, **overrides) -> pd.DataFrame:
    return pd.DataFrame({"metric": ["exact_match"], "filter": ["none"], "n": [n], "value": [1.0], "stderr": [0.0],
                         "ci_low": [1.0], "ci_high": [1.0]}).assign(**overrides)


def _alone(check, partitions: dict, *args) -> dict:
    return {key: check({key: value}, *args)[key] for key, value in partitions.items()}


def _same(together: dict, alone: dict) -> None:
    assert together.keys() == alone.keys()
    for key in together:
        assert (together[key].success, together[key].evaluated, together[key].failures, together[key].note) == (
            alone[key].success, alone[key].evaluated, alone[key].failures, alone[key].note), key


def test_partitions_validated_together_keep_their_own_unexpected_rows():
    ex = checks._expectations()
    frames = {"m|a": pd.DataFrame({"doc_id": [0, 1, 2], "score": [0.5, 1.0, 2.0]}),
              "m|b": pd.DataFrame({"doc_id": [0, 1, 1], "score": [0.0, 3.0, 4.0]}),  # a's doc ids again: no clash
              "m|c": pd.DataFrame({"doc_id": [], "score": []})}

    def expectations():
        return [ex.ExpectCompoundColumnsToBeUnique(column_list=[checks.PARTITION, "doc_id"]),
                ex.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1)]

    found = checks.validate_partitions(frames, expectations)
    assert {key: v.success for key, v in found.items()} == {"m|a": False, "m|b": False, "m|c": True}
    assert found["m|a"].failures == [{"expectation": "expect_column_values_to_be_between(score)", "unexpected": 1}]
    assert sorted((f["expectation"], f["unexpected"]) for f in found["m|b"].failures) == [
        ("expect_column_values_to_be_between(score)", 2), ("expect_compound_columns_to_be_unique(['doc_id'])", 2)]
    assert all(v.evaluated == 2 for v in found.values())
    _same(found, {key: checks.validate_partitions({key: frame}, expectations)[key] for key, frame in frames.items()})


def test_an_expectation_gx_cannot_evaluate_fails_every_partition():
    ex = checks._expectations()
    found = checks.validate_partitions({"a": pd.DataFrame({"x": [1]}), "b": pd.DataFrame({"x": [2]})},
                                       lambda: [ex.ExpectColumnValuesToNotBeNull(column="absent")])
    assert [v.failures for v in found.values()] == [[{"expectation": "expect_column_values_to_not_be_null(absent)",
                                                      "unexpected": None}]] * 2


def test_the_generation_checks_of_a_run_equal_their_partitions_alone():
    partitions = {"m|ok": (_rows(20), 20), "m|lost": (_rows(20).iloc[:19], 20),
                  "m|twice": (_rows(3).iloc[[0, 1, 1]], 3), "m|beyond": (_rows(20), 5), "m|none": (_rows(0), 0),
                  "m|broken": (pd.DataFrame({"x": [1]}), 1)}
    together = checks.check_generations_by_partition(partitions)
    _same(together, _alone(checks.check_generations_by_partition, partitions))
    assert [key for key, v in together.items() if v.success] == ["m|ok", "m|none"]
    failed = {key: {f["expectation"].split("(")[0]: f["unexpected"] for f in v.failures} for key, v in together.items()}
    assert failed["m|lost"] == {"expect_column_pair_values_to_be_equal": 1}
    assert failed["m|twice"] == {"expect_compound_columns_to_be_unique": 2}
    assert failed["m|beyond"] == {"expect_column_pair_values_to_be_equal": 1,
                                  "expect_column_pair_values_a_to_be_greater_than_b": 15}
    assert "could not evaluate" in together["m|broken"].summary()

    # a partition whose column GX cannot compare once concatenated fails alone; a missing index is skipped
    odd = {"m|ok": (_rows(3), 3), "m|text": (_rows(3).assign(request_index=["0", "1", "9"]), 3),
           "m|missing": (_rows(3).assign(request_index=[0, 1, None]), 3)}
    together = checks.check_generations_by_partition(odd)
    assert {key: v.success for key, v in together.items()} == {"m|ok": True, "m|text": False, "m|missing": True}
    _same(together, _alone(checks.check_generations_by_partition, odd))


@pytest.mark.parametrize("errors, passed", [(1, True), (2, False)])
def test_the_health_check_holds_at_its_threshold_and_fails_past_it(errors, passed):
    partitions = {"m|a": _rows(20), "m|b": _rows(20, errors=errors), "m|c": _rows(0), "m|d": _rows(4, empty=4)}
    together = checks.check_generation_health_by_partition(partitions, 0.05, 0.5)
    _same(together, _alone(checks.check_generation_health_by_partition, partitions, 0.05, 0.5))
    assert {key: v.success for key, v in together.items()} == {"m|a": True, "m|b": passed, "m|c": True, "m|d": False}
    assert (together["m|c"].evaluated, together["m|a"].evaluated) == (0, 2)


def test_the_grade_and_metric_checks_of_a_run_equal_their_partitions_alone():
    grades = {"m|ok": _grades(5), "m|high": _grades(5, score=[2.0, 1.0, 1.0, 1.0, 1.0]),
              "m|twice": _grades(5, doc_id=[0, 0, 1, 2, 3]), "m|none": _grades(0),
              "m|words": _grades(2, score=["x", "y"]),
              "m|judged": _grades(3, grader=["judge:j"] * 3, rubric_sha256=["h", None, "h"]),
              "m|errors": _grades(2, score=[None, None], error=["not gradable", "not gradable"])}
    together = checks.check_grades_by_partition(grades)
    _same(together, _alone(checks.check_grades_by_partition, grades))
    assert {key: v.success for key, v in together.items()} == {
        "m|ok": True, "m|high": False, "m|twice": False, "m|none": True, "m|words": False, "m|judged": False,
        "m|errors": True}
    assert together["m|judged"].failures == [{"expectation": "expect_column_values_to_not_be_null(rubric_sha256)",
                                              "unexpected": 1}]
    assert (together["m|ok"].evaluated, together["m|judged"].evaluated) == (2, 3)

    metrics = {"m|ok": (_metrics(5), _grades(5)), "m|n": (_metrics(6), _grades(5)),
               "m|ci": (_metrics(5, ci_low=[0.9], ci_high=[0.95]), _grades(5)),
               "m|no_ci": (_metrics(5, stderr=[None], ci_low=[None], ci_high=[None]), _grades(5)),
               "m|empty": (_metrics(5).iloc[:0], _grades(5)),
               "m|broken": (pd.DataFrame({"metric": ["acc"]}), _grades(1))}
    together = checks.check_metrics_by_partition(metrics)
    _same(together, _alone(checks.check_metrics_by_partition, metrics))
    assert {key: v.success for key, v in together.items()} == {
        "m|ok": True, "m|n": False, "m|ci": False, "m|no_ci": True, "m|empty": True, "m|broken": False}
    assert (together["m|ok"].evaluated, together["m|no_ci"].evaluated) == (3, 1)
