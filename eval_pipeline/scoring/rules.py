"""Rule grading as lm-evaluation-harness does it, per sample.

The filters and metric functions are lm-eval's own (the pinned `lm-eval` package); this module only
feeds them as the harness's task code does: filters run over every doc's responses, multiple choice
picks the argmax of the loglikelihoods (raw, per character, per byte), and a generated answer is
compared with its gold (any of several golds when the target is a list).
"""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Callable, Sequence, cast

import numpy as np

NON_KWARGS = {"metric", "aggregation", "higher_is_better"}
DEFAULT_FILTERS: list[dict[str, Any]] = [{"name": "none", "filter": [{"function": "take_first"}]}]


@dataclass(frozen=True)
class TaskRules:
    """What grading needs from a task's lm-eval config."""

    output_type: str  # multiple_choice | generate_until | loglikelihood | loglikelihood_rolling
    metrics: list[dict[str, Any]] = field(default_factory=list)  # lm-eval's metric_list entries
    filters: list[dict[str, Any]] = field(default_factory=list)  # lm-eval's filter_list entries
    target_delimiter: str = " "
    doc_to_choice: Any = None  # lm-eval's doc_to_choice (a list, a dict, a field name or a template)

    @classmethod
    def from_config(cls, config: dict[str, Any], output_type: str | None = None) -> "TaskRules":
        """From an lm-eval task config (output_type, metric_list, filter_list, target_delimiter, doc_to_choice);
        `output_type` when the config has none, else generate_until."""
        return cls(output_type=config.get("output_type") or output_type or "generate_until",
                   metrics=list(config.get("metric_list") or []), filters=list(config.get("filter_list") or []),
                   target_delimiter=config.get("target_delimiter", " "), doc_to_choice=config.get("doc_to_choice"))

    def only(self, metric: str) -> "TaskRules":
        """The same rules with one metric of the metric_list (its options kept)."""
        kept = [m for m in self.metrics if m.get("metric") == metric] or [{"metric": metric}]
        return replace(self, metrics=kept)

    def metric_names(self, default: Sequence[str]) -> list[str]:
        """The metric_list's metric names (string ones), or `default` when it names none."""
        return [m["metric"] for m in self.metrics if isinstance(m.get("metric"), str)] or list(default)

    def metric_kwargs(self, name: str) -> dict[str, Any]:
        """The options of metric `name` in the metric_list, for its metric function (aggregation and
        higher_is_better left out); {} when it is not listed."""
        for m in self.metrics:
            if m.get("metric") == name:
                return {k: v for k, v in m.items() if k not in NON_KWARGS}
        return {}


def _lm_eval() -> Any:
    import lm_eval.api.metrics  # noqa: F401  (registers the metric functions)
    import lm_eval.filters  # noqa: F401  (registers the filter classes)
    from lm_eval.api import registry  # deferred: lm_eval takes seconds to import; only grading needs it

    return registry


_OWN_METRICS = {"judge_score": True, "embedding_similarity": True, "human_score": True, "numeric_match": True}


def higher_is_better(metric_spec: list[Any] | None, metric: str) -> bool | None:
    """Whether a larger `metric` is better: the task's metric_list says, else this product's graders, else
    lm-eval's registry (lm_eval.api.registry.higher_is_better_registry); None when none knows."""
    for m in metric_spec or []:
        if isinstance(m, dict) and m.get("metric") == metric and isinstance(m.get("higher_is_better"), bool):
            return cast(bool, m["higher_is_better"])
    if metric in _OWN_METRICS:
        return _OWN_METRICS[metric]
    return cast("bool | None", _lm_eval().higher_is_better_registry.get(metric, None))


def filtered_predictions(rules: TaskRules, responses: list[list[str]], docs: list[dict[str, Any]]
                         ) -> dict[str, list[Any]]:
    """{filter name: one filtered prediction per doc}: each filter_list entry's chain of lm-eval filters
    over every doc's responses (a chain without take_first leaves a list per doc, as in lm-eval)."""
    registry = _lm_eval()
    out: dict[str, list[Any]] = {}
    for entry in rules.filters or DEFAULT_FILTERS:
        resps: Any = [list(r) for r in responses]
        for step in entry["filter"]:
            kwargs = {k: v for k, v in step.items() if k != "function"}
            resps = list(registry.get_filter(step["function"])(**kwargs).apply(resps, docs))
        out[entry["name"]] = resps
    return out


def choices_of(continuations: list[str], target_delimiter: str) -> list[str]:
    """lm-eval's doc_to_choice strings: the request continuations without the target delimiter."""
    return [c[len(target_delimiter):] if target_delimiter and c.startswith(target_delimiter) else c
            for c in continuations]


def gold_index(target: Any, choices: list[str]) -> int | list[Any]:
    """The gold of a multiple-choice doc as lm-eval's samples log it: an index (an int, or its string:
    the harness logs targets as strings), a choice string, or a list of those; -100 where it names no
    choice. A digit string is read as an index first: that is what doc_to_target gives for nearly every
    multiple-choice task, and the log no longer says which it was. A list gives a list of these (of ints for
    a list of indexes or choices)."""
    if isinstance(target, list):
        return [gold_index(t, choices) for t in target]
    if isinstance(target, str):
        if target.isdigit() and int(target) < len(choices):
            return int(target)
        return choices.index(target) if target in choices else -100
    return target if isinstance(target, int) and 0 <= target < len(choices) else -100


def multiple_choice_scores(rules: TaskRules, lls: Sequence[float], is_greedy: Sequence[bool],
                           choices: list[str], gold: int | list[int]) -> dict[str, float]:
    """acc, acc_norm (loglikelihood per character of the choice), acc_bytes (per UTF-8 byte),
    exact_match (the gold was the greedy continuation), as the task's metric_list asks: {metric: 0.0 or 1.0}
    (lm_eval/api/task.py `ConfigurableTask.process_results`, multiple_choice branch)."""
    def argmax(values: list[float]) -> int:
        return max(range(len(values)), key=values.__getitem__)  # first of ties, as numpy's argmax

    pred = argmax(list(lls))
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty choice: lm-eval's numpy gives +-inf/nan
        lengths = np.array([len(c) for c in choices], dtype=float)
        byte_lengths = np.array([len(c.encode("utf-8")) for c in choices], dtype=float)
        pred_norm = int(np.argmax(np.asarray(lls, dtype=float) / lengths))
        pred_bytes = int(np.argmax(np.asarray(lls, dtype=float) / byte_lengths))
    golds = gold if isinstance(gold, list) else [gold]
    scores = {
        "acc": float(pred in golds), "acc_norm": float(pred_norm in golds), "acc_bytes": float(pred_bytes in golds),
        "exact_match": float(any(is_greedy[g] for g in golds if g != -100)),
    }
    return {m: scores[m] for m in rules.metric_names(["acc", "acc_norm"]) if m in scores}


def generation_scores(rules: TaskRules, prediction: Any, gold: Any) -> dict[str, float]:
    """Each metric of the task on one filtered prediction, {metric: score}, by lm-eval's registered metric
    functions (numeric_match here); a list gold means any of them counts. Raises what the metric raises
    (ValueError from numeric_match for a gold that is not a number)."""
    registry = _lm_eval()
    out: dict[str, float] = {}
    for name in rules.metric_names(["exact_match"]):
        kwargs = rules.metric_kwargs(name)
        if name == NUMERIC_MATCH:
            golds = gold if isinstance(gold, list) else [gold]
            out[name] = 1.0 if any(numeric_match(prediction, g, **kwargs) for g in golds) else 0.0
            continue
        fn = registry.get_metric(name)
        golds = gold if isinstance(gold, list) else [gold]
        if not isinstance(prediction, list) and not isinstance(prediction, type(golds[0])):
            golds = [type(prediction)(g) for g in golds]
        values = []
        for g in golds:
            value = fn(references=[g], predictions=[prediction], **kwargs)
            values.append(float(value[name] if isinstance(value, dict) else value))
        out[name] = (1.0 if any(values) else 0.0) if isinstance(gold, list) else values[0]
    return out


NUMERIC_MATCH = "numeric_match"
_NUMBER_NOISE = str.maketrans("", "", ",$%€£ \u00a0")


def parse_number(text: Any) -> Fraction | None:
    """A math answer as a number: `1,234`, `$5`, `-0.50`, `3/4`, `1e3` (None when it is not one)."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return Fraction(text) if math.isfinite(text) else None
    s = str(text).strip().translate(_NUMBER_NOISE).rstrip(".")
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        try:
            value = float(s)
        except ValueError:
            return None
        return Fraction(value) if math.isfinite(value) else None


def numeric_match(prediction: Any, gold: Any, abs_tol: float = 0.0, rel_tol: float = 1e-9) -> bool:
    """Numeric tolerance for math answers (metric `numeric_match`, options `abs_tol`, `rel_tol`): equal
    as numbers within max(rel_tol * |gold|, abs_tol), so `1,000.0` matches `1000`. A prediction that is
    not a number does not match; a gold that is not one cannot be graded (ValueError)."""
    want = parse_number(gold)
    if want is None:
        raise ValueError(f"numeric_match: the target {gold!r} is not a number")
    got = parse_number(prediction)
    return got is not None and abs(got - want) <= max(rel_tol * abs(want), abs_tol)


def exact_match_scores(predictions: Sequence[str], references: Sequence[str],
                       regexes_to_ignore: Sequence[str] | None = None,
                       ignore_case: bool = False, ignore_punctuation: bool = False,
                       ignore_numbers: bool = False) -> list[float]:
    """Per-sample exact_match over many samples at once, normalised exactly as lm-eval's
    exact_match_hf_evaluate normalises (regexes removed in order, then case, punctuation, digits).
    lm-eval's function does the same work but returns only the mean; called once per sample it costs
    about 18 µs, which would make a million samples take 20 s (tests hold the two equal)."""

    preds, refs = list(predictions), list(references)
    for pattern in map(re.compile, regexes_to_ignore or []):
        preds = [pattern.sub("", p) for p in preds]
        refs = [pattern.sub("", r) for r in refs]
    steps: list[Callable[..., str]] = []  # str -> str (the lambdas bind their table as a default)
    if ignore_case:
        steps.append(str.lower)
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        steps.append(lambda s, table=table: s.translate(table))
    if ignore_numbers:
        table = str.maketrans("", "", string.digits)
        steps.append(lambda s, table=table: s.translate(table))
    for step in steps:
        preds, refs = list(map(step, preds)), list(map(step, refs))
    return [1.0 if p == r else 0.0 for p, r in zip(preds, refs)]
