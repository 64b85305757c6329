"""Grading that follows lm-eval's task code (lm_eval/api/task.py, `ConfigurableTask.process_results` and
`doc_to_choice`) where the plain rules of rules.py do not reach: loglikelihood_rolling tasks, generate_until
tasks with `doc_to_choice`, and tasks whose `process_results` is Python, run from the installed lm-eval's
own task registry.

Rows appended are the grades rows of grading/rule_grades.py: (doc_id, filter, metric, score, grader, error,
stats).
"""
from __future__ import annotations

import ast
import math
from typing import Any, TypeAlias, cast

import numpy as np

from eval_pipeline.harness.jsonio import loads
from eval_pipeline.scoring.corpus import CORPUS_METRICS, corpus_value
from eval_pipeline.scoring.gradability import registry_process_results
from eval_pipeline.scoring.rules import TaskRules, filtered_predictions

ROLLING_METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")

# One grade as graders produce it, a row of a grade file (grading/grade_files.py): (doc_id, filter, metric, score,
# grader, error, stats); `score` is None when `error` says why, `stats` a corpus metric's per-sample statistics.
GradeRow: TypeAlias = tuple[int, str, str, float | None, str, str | None, list[float] | None]


def generation_error(rows_of_doc: list[dict[str, Any]]) -> str | None:
    """The reason a doc cannot be graded: its first failed request ("generation failed: <error>"), or None.
    `rows_of_doc` are the doc's generation rows (dicts with an `error` key)."""
    errors = [r["error"] for r in rows_of_doc if r["error"]]
    return f"generation failed: {errors[0]}" if errors else None


def doc_choices(doc_to_choice: Any, doc: dict[str, Any]) -> list[Any]:
    """lm-eval's `ConfigurableTask.doc_to_choice`: a list as it is, a dict's values, a doc field's name, or a
    Jinja template rendered on the doc and read as a Python literal (lm-eval's `utils.apply_template`).
    Raises ValueError for any other doc_to_choice (and for a template that renders no literal)."""
    if isinstance(doc_to_choice, list):
        return doc_to_choice
    if isinstance(doc_to_choice, dict):
        return list(doc_to_choice.values())
    if isinstance(doc_to_choice, str):
        if doc_to_choice in doc:
            return cast(list[Any], doc[doc_to_choice])  # the field holds the choices
        from lm_eval.utils import apply_template  # deferred: lm_eval takes seconds to import

        return cast(list[Any], ast.literal_eval(apply_template(doc_to_choice, doc)))  # a rendered list
    raise ValueError(f"doc_to_choice {doc_to_choice!r} is neither a list, a dict nor a template")


def logged_target(target: Any) -> Any:
    """A target as lm-eval meant it. lm-eval 0.4.x logs `str(target)`, so a list of golds arrives as the
    text "['a', 'b']"; like lm-eval's own `doc_to_target`, which reads a rendered "[...]" with
    `ast.literal_eval`, such a text is the list it spells."""
    if isinstance(target, str) and len(target) >= 2 and target[0] == "[" and target[-1] == "]":
        try:
            value = ast.literal_eval(target)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return target
        return value if isinstance(value, list) else target
    return target


def generation_gold(rules: TaskRules, target: Any, doc: dict[str, Any]) -> Any:
    """The gold a generated answer is compared with: with `doc_to_choice` the target is an index and the
    gold is `choices[target]` (lm-eval's generate_until branch); otherwise the target itself (a logged
    list of golds read back as a list: any of them counts). Raises ValueError for a target that is no index."""
    target = logged_target(target)
    if rules.doc_to_choice is None:
        return target
    choices = doc_choices(rules.doc_to_choice, doc)

    def pick(index: Any) -> Any:
        if isinstance(index, str) and index.strip().lstrip("-").isdigit():
            index = int(index)
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"with doc_to_choice the target must be a choice index, not {index!r}")
        return choices[index]

    return [pick(i) for i in target] if isinstance(target, list) else pick(target)


def _rolling_item(metric: str, ll: float, target: str) -> list[float]:
    """lm-eval's (loglikelihood, words | bytes) item of a loglikelihood_rolling doc (Task.count_words,
    Task.count_bytes over doc_to_target)."""
    from lm_eval.api.task import Task  # deferred: lm_eval takes seconds to import

    weight = Task.count_words(target) if metric == "word_perplexity" else Task.count_bytes(target)
    return [ll, float(weight)]


def _item_row(doc_id: int, filter_name: str, metric: str, value: Any) -> GradeRow:
    """A grades row from one lm-eval item: a number is the score; an (ll, weight) pair of a weighted
    aggregation keeps both as statistics, scored as the doc alone would be."""
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return (doc_id, filter_name, metric, float(value), "rule", None, None)
    corpus = CORPUS_METRICS.get(metric)
    if (corpus is not None and corpus.kind == "weighted" and isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) for v in value)):
        stats = [float(value[0]), float(value[1])]
        score = corpus_value(metric, np.array([stats])) if stats[1] else None
        return (doc_id, filter_name, metric, score, "rule", None if score is not None else "zero weight", stats)
    return (doc_id, filter_name, metric, None, "rule",
            f"lm-eval's item for {metric} is a {type(value).__name__}: its aggregation is not computed here", None)


def grade_rolling(rules: TaskRules, by_doc: dict[int, list[dict[str, Any]]], inputs: dict[int, dict[str, Any]],
                  rows: list[GradeRow]) -> None:
    """word_perplexity, byte_perplexity, bits_per_byte of loglikelihood_rolling docs, kept as lm-eval's
    (loglikelihood, weight) items so the aggregates are its weighted ones.

    `by_doc`: each doc's generation rows; `inputs`: the task's input rows by doc id (`target` as JSON);
    grades rows are appended to `rows`."""
    metrics = rules.metric_names(list(ROLLING_METRICS))
    for doc_id, doc_rows in sorted(by_doc.items()):
        error = generation_error(doc_rows)
        target = loads(inputs[doc_id]["target"]) if doc_id in inputs else None
        for m in metrics:
            if error is not None:
                rows.append((doc_id, "none", m, None, "rule", error, None))
            elif m not in ROLLING_METRICS:
                rows.append((doc_id, "none", m, None, "rule", f"{m} is not a loglikelihood_rolling metric", None))
            elif not isinstance(target, str):
                rows.append((doc_id, "none", m, None, "rule", "the doc's target is not a text to count", None))
            else:
                rows.append(_item_row(doc_id, "none", m, tuple(_rolling_item(m, doc_rows[0]["logprob"], target))))


def grade_with_registry(task_name: str, rules: TaskRules, by_doc: dict[int, list[dict[str, Any]]],
                        inputs: dict[int, dict[str, Any]], rows: list[GradeRow]) -> None:
    """Score each doc with the installed lm-eval's `process_results(doc, results)` of task `task_name`,
    fed as lm-eval feeds it: (loglikelihood, is_greedy) per request for multiple_choice and loglikelihood,
    (loglikelihood,) for loglikelihood_rolling, the filtered answer per filter for generate_until.

    Arguments as grade_rolling's; a doc whose generation or process_results failed gets error rows. Raises
    KeyError when the registry task has no process_results."""
    process = registry_process_results(task_name)
    wanted = set(rules.metric_names([]))
    doc_ids = sorted(by_doc)
    docs = {d: (loads(inputs[d]["doc"]) if d in inputs else None) or {} for d in doc_ids}
    if rules.output_type == "generate_until":
        responses = [[r["output_text"] or "" for r in by_doc[d]] for d in doc_ids]
        per_filter = filtered_predictions(rules, responses, [docs[d] for d in doc_ids])
        feeds = {f: {d: [p] for d, p in zip(doc_ids, preds)} for f, preds in per_filter.items()}
    else:
        n_choices = {d: len(inputs[d]["continuations"] or []) if d in inputs else 0 for d in doc_ids}
        feeds = {"none": {d: ([by_doc[d][0]["logprob"]] if rules.output_type == "loglikelihood_rolling"
                              else [(r["logprob"], bool(r["is_greedy"])) for r in by_doc[d][:n_choices[d] or None]])
                          for d in doc_ids}}
    for filter_name, feed in feeds.items():
        for d in doc_ids:
            error = generation_error(by_doc[d])
            if error is None:
                try:
                    items = process(docs[d], feed[d])
                except Exception as e:  # noqa: BLE001  lm-eval's task code failing on a doc fails that doc
                    error = f"lm-eval's process_results of {task_name} failed: {type(e).__name__}: {e}"
            if error is not None:
                rows.extend((d, filter_name, m, None, "rule", error, None) for m in sorted(wanted) or ["acc"])
                continue
            for metric, value in items.items():
                if wanted and metric not in wanted:
                    continue
                row = _item_row(d, filter_name, metric, value)
                if row[3] is not None and not math.isfinite(row[3]):
                    row = (*row[:3], None, "rule", f"lm-eval's {metric} for this doc is {row[3]}", row[6])
                rows.append(row)
