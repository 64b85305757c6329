"""Rule grading against the reference harness: recompute the per-sample metrics of real lm-eval
outputs (third-party files in ../shared) from their responses and targets, and match what the harness
recorded; plus lm-eval's filters and metric options on the project's own cases."""
import json

import pytest

from eval_pipeline.harness.jsonio import loads
from eval_pipeline.harness.samples import request_args
from eval_pipeline.scoring.rules import (
    TaskRules,
    choices_of,
    filtered_predictions,
    generation_scores,
    gold_index,
    multiple_choice_scores,
)


def _samples(path):
    text = path.read_text()
    return json.loads(text) if text.lstrip().startswith("[") else [loads(line) for line in text.splitlines()]


def _pair(resp):
    """A multiple-choice response as logged: [logprob, is_greedy], possibly as strings."""
    ll, greedy = resp[0] if isinstance(resp[0], list) else resp
    return float(ll), greedy in (True, "True")


def test_multiple_choice_scores_equal_the_harness(real_fixtures):
    folder = real_fixtures / "v0.4.13dev_negotiationtom" / "Qwen__Qwen3-8B"
    config = json.loads(next(folder.glob("results_*.json")).read_text())["configs"]["negotiationtom_belief"]
    rules = TaskRules.from_config(config)
    samples = _samples(next(folder.glob("samples_negotiationtom_belief_*.jsonl")))
    assert len(samples) == 20
    for s in samples:
        lls, greedy = zip(*(_pair(r) for r in s["resps"]))
        choices = choices_of([a[1] for a in request_args(s["arguments"])], rules.target_delimiter)
        assert choices == s["doc"]["choices"]
        scores = multiple_choice_scores(rules, lls, greedy, choices, gold_index(s["target"], choices))
        assert scores == {"acc": s["acc"]}, s["doc_id"]
    assert 0 < sum(s["acc"] for s in samples) < 20  # both outcomes occur, so the comparison bites


def test_generation_scores_equal_the_harness(real_fixtures):
    out = real_fixtures / "v0.4.2_results-json" / "out"
    config = json.loads((out / "results.json").read_text())["configs"]["wmdp_bio"]
    rules = TaskRules.from_config(config)
    samples = _samples(out / "model__gpt-3.5-turbo-0125_wmdp_bio.jsonl")
    filtered = filtered_predictions(rules, [s["resps"][0] for s in samples], [s["doc"] for s in samples])
    assert list(filtered) == ["none"]
    for s, prediction in zip(samples, filtered["none"]):
        assert prediction == s["filtered_resps"][0]
        assert generation_scores(rules, prediction, s["target"]) == {"exact_match": s["exact_match"]}, s["doc_id"]
    # every recorded answer is one of the four golds; an answer that is none of them scores 0
    assert generation_scores(rules, "E", samples[0]["target"]) == {"exact_match": 0.0}


GSM8K_LIKE = TaskRules("generate_until", metrics=[
    {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True,
     "ignore_punctuation": False, "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}], filters=[
    {"name": "strict-match", "filter": [{"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                                        {"function": "take_first"}]},
    {"name": "flexible-extract", "filter": [
        {"function": "regex", "group_select": -1, "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
        {"function": "take_first"}]}])


@pytest.mark.parametrize("output, target, strict, flexible", [
    ("Adding them: 12 + 30 = 42.\n#### 42", "42", 1.0, 1.0),
    ("The answer is $1,250.", "1250", 0.0, 1.0),
    ("#### 41\nso 42", "42", 0.0, 1.0),
    ("I think 7 then 9", "7", 0.0, 0.0),
])
def test_filters_and_metric_options_follow_lm_eval(output, target, strict, flexible):
    filtered = filtered_predictions(GSM8K_LIKE, [[output]], [{}])
    assert generation_scores(GSM8K_LIKE, filtered["strict-match"][0], target)["exact_match"] == strict
    assert generation_scores(GSM8K_LIKE, filtered["flexible-extract"][0], target)["exact_match"] == flexible


def test_acc_norm_and_acc_bytes_divide_by_characters_and_bytes():
    rules = TaskRules("multiple_choice", metrics=[{"metric": m} for m in ("acc", "acc_norm", "acc_bytes")])
    # raw: "a" (-1); per character: "bbbb" (-0.5); per byte: "éé" (-1.5 / 4 bytes = -0.375)
    choices, lls = ["a", "bbbb", "éé"], [-1.0, -2.0, -1.5]
    for gold, expected in ((0, (1.0, 0.0, 0.0)), (1, (0.0, 1.0, 0.0)), (2, (0.0, 0.0, 1.0))):
        scores = multiple_choice_scores(rules, lls, [False] * 3, choices, gold)
        assert (scores["acc"], scores["acc_norm"], scores["acc_bytes"]) == expected
    assert gold_index("bbbb", choices) == 1 and gold_index("2", choices) == 2 and gold_index(7, choices) == -100
    # a digit string is an index first, even where it is also a choice's text
    assert gold_index("2", ["2", "3", "5"]) == 2 and gold_index("5", ["2", "3", "5"]) == 2


def test_summaries_use_lm_eval_stderr_and_sensible_intervals():
    from eval_pipeline.results.metrics import summarise

    half = summarise([1.0] * 5 + [0.0] * 5)
    assert half["value"] == 0.5 and half["stderr"] == pytest.approx(0.16666666666666666)  # sqrt(.25*10/9)/sqrt(10)
    assert (round(half["ci_low"], 4), round(half["ci_high"], 4)) == (0.2366, 0.7634)  # Wilson, textbook value
    for n in range(1, 60):  # p = 0 and p = 1 stay inside their interval despite rounding
        low = summarise([0.0] * n)
        high = summarise([1.0] * n)
        assert low["ci_low"] == 0.0 < low["ci_high"] and high["ci_low"] < 1.0 == high["ci_high"]
    assert 0.10 < summarise([0.0] * 30)["ci_high"] < 0.12  # not the degenerate [0, 0]
    scores = [0.2, 0.4, 0.9]
    spread = summarise(scores)
    assert spread["ci_high"] - spread["value"] == pytest.approx(1.959963984540054 * spread["stderr"])
    assert summarise([]) == {"value": None, "stderr": None, "ci_low": None, "ci_high": None, "n": 0}


def test_single_continuation_tasks_grade_acc_as_greedy(eval_home):
    """output_type loglikelihood (lambada-style): acc is is_greedy, not an argmax over one choice."""
    import dagster as dg
    from sqlalchemy import select, update

    from eval_pipeline import runs
    from eval_pipeline.orchestration.definitions import defs
    from eval_pipeline.orchestration.job_names import GENERATION_JOB
    from eval_pipeline.service.launching import execute_in_process
    from eval_pipeline.stores.catalog import tables as t

    with eval_home.catalog.session() as s:
        task_id = s.scalar(select(t.Task.id).where(t.Task.name == "ev_mc_b"))
        s.execute(update(t.Task).where(t.Task.id == task_id).values(
            grading={"output_type": "loglikelihood"}, metric_spec=[{"metric": "acc"}, {"metric": "perplexity"}]))
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"],
                                                              "task_ids": [task_id]})
    execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB), run_config={"loggers": {"console": {"config": {
                           "log_level": "ERROR"}}}})
    grades = eval_home.lake.read_table(f"grades/{run['id']}/tiny/ev_mc_b/rules.parquet").to_pylist()
    part = runs.run_partitions(eval_home.catalog, run["id"])[0]
    gens = [r for c in part.chunks for r in eval_home.lake.read_table(c["path"]).to_pylist()]
    first_of_doc = {}
    for g in sorted(gens, key=lambda g: g["request_index"]):
        first_of_doc.setdefault(g["doc_id"], g)
    acc = {g["doc_id"]: g["score"] for g in grades if g["metric"] == "acc"}
    assert acc == {d: float(g["is_greedy"]) for d, g in first_of_doc.items()}
    from lm_eval.api.metrics import perplexity

    lls = {g["doc_id"]: g["score"] for g in grades if g["metric"] == "perplexity"}
    assert lls == {d: g["logprob"] for d, g in first_of_doc.items()}
    metric = {r["metric"]: r for r in eval_home.lake.read_table(
        f"metrics/{run['id']}/tiny/ev_mc_b/metrics.parquet").to_pylist()}["perplexity"]
    assert metric["value"] == pytest.approx(perplexity(list(lls.values())), rel=1e-12)
    assert metric["stderr"] > 0 and metric["ci_low"] <= metric["value"] <= metric["ci_high"]


@pytest.mark.parametrize("options", [
    {}, {"ignore_case": True}, {"ignore_punctuation": True}, {"ignore_numbers": True},
    {"regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"], "ignore_case": True},
    {"regexes_to_ignore": ["\\s+"], "ignore_case": True, "ignore_punctuation": True, "ignore_numbers": True},
])
def test_batched_exact_match_equals_lm_evals_per_sample(options):
    import random

    from lm_eval.api.metrics import exact_match_hf_evaluate

    from eval_pipeline.scoring.rules import exact_match_scores

    rng = random.Random(7)
    alphabet = "aAbB 12,.$#!\n"
    refs = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(400)]
    # half are near-misses of their reference (case, punctuation, digits, spaces), half are unrelated
    preds = [r.upper() + rng.choice(["", ".", "1", " ", "$"]) if i % 2 else
             "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for i, r in enumerate(refs)]
    expected = [float(exact_match_hf_evaluate([p], [r], **options)["exact_match"]) for p, r in zip(preds, refs)]
    assert exact_match_scores(preds, refs, **options) == expected
    assert 0 < sum(expected) < len(expected)  # both outcomes occur


@pytest.mark.parametrize("prediction,gold,options,expected", [
    ("1,000.0", "1000", {}, True), ("$5", "5", {}, True), ("3/4", "0.75", {}, True), ("-0.50", "-1/2", {}, True),
    ("0.333", "1/3", {"abs_tol": 1e-3}, True), ("0.333", "1/3", {}, False), ("1e3", 1000, {}, True),
    ("101", "100", {"rel_tol": 0.02}, True), ("103", "100", {"rel_tol": 0.02}, False), ("seven", "7", {}, False),
    ("", "7", {}, False), ("12.", "12", {}, True),
])
def test_numeric_match_tolerates_formatting_and_its_tolerance(prediction, gold, options, expected):
    from eval_pipeline.scoring.rules import numeric_match

    assert numeric_match(prediction, gold, **options) is expected


def test_numeric_match_through_a_run(eval_home):
    """A task's metric_list set to numeric_match grades every doc of a run by it."""
    import dagster as dg
    from sqlalchemy import select

    from eval_pipeline import runs
    from eval_pipeline.errors import InvalidInput
    from eval_pipeline.grading.generated_docs import generation_docs
    from eval_pipeline.orchestration.definitions import defs
    from eval_pipeline.orchestration.job_names import GENERATION_JOB
    from eval_pipeline.scoring.rules import numeric_match, parse_number
    from eval_pipeline.service.launching import execute_in_process
    from eval_pipeline.stores.catalog import tables as t
    from eval_pipeline.suites.tasks import set_metric_list

    with eval_home.catalog.session() as s:
        task_id = s.scalar(select(t.Task.id).where(t.Task.name == "ev_gen_a"))
    with pytest.raises(InvalidInput) as e:
        set_metric_list(eval_home.catalog, task_id, [{"metric": "numeric_match"}, {"metric": "no_such_metric"}])
    assert e.value.field == "metric_list[1].metric"
    set_metric_list(eval_home.catalog, task_id, [{"metric": "numeric_match", "abs_tol": 1000}])
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"],
                                                              "task_ids": [task_id], "generation": {"max_gen_toks": 4}})
    execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB), run_config={"loggers": {"console": {"config": {
                           "log_level": "ERROR"}}}})
    grades = eval_home.lake.read_table(f"grades/{run['id']}/tiny/ev_gen_a/rules.parquet").to_pylist()
    docs = {d.doc_id: d for d in generation_docs(eval_home.catalog, eval_home.lake, run["id"], "tiny", task_id)}
    assert len(grades) == 12 and {g["metric"] for g in grades} == {"numeric_match"}
    for g in grades:
        d = docs[g["doc_id"]]
        if parse_number(d.reference) is None:
            assert g["score"] is None and "not a number" in g["error"]
        else:
            assert g["score"] == float(numeric_match(d.prediction, d.reference, abs_tol=1000))
