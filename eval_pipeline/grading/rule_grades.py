"""Rule grades of one (model, task) partition of a run: its generations joined with the task's inputs
(targets, choices), scored by rules.py, published as one atomic Parquet file."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pyarrow as pa

from eval_pipeline.generation.requests import ROLLING
from eval_pipeline.grading.generated_docs import load_partition
from eval_pipeline.grading.grade_files import grades_path, grades_table, rubric_text
from eval_pipeline.harness.jsonio import loads
from eval_pipeline.runs.staleness import grading_settings
from eval_pipeline.scoring.corpus import CORPUS_METRICS, label_stats, text_stats
from eval_pipeline.scoring.gradability import PREDICT_ONLY, REFUSED, REGISTRY, Gradability
from eval_pipeline.scoring.lm_eval_code import (
    GradeRow,
    generation_error,
    generation_gold,
    grade_rolling,
    grade_with_registry,
    logged_target,
)
from eval_pipeline.scoring.rules import (
    TaskRules,
    choices_of,
    exact_match_scores,
    filtered_predictions,
    generation_scores,
    gold_index,
    multiple_choice_scores,
)
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake
from eval_pipeline.suites.tasks import task_gradability

_GENERATION_COLUMNS = ["doc_id", "request_index", "request_kind", "output_text", "logprob", "is_greedy", "error"]


@dataclass
class GradeReport:
    """What rule grading a partition did: the grades file's lake path, its docs and grade rows, the docs with
    an ungraded row, the mean score per (metric, filter) and the task's gradability."""

    path: str
    docs: int
    rows: int
    failed_docs: int
    means: dict[tuple[str, str], float]  # (metric, filter) -> mean over graded docs
    gradability: Gradability | None = None


def _task(catalog: Catalog, task_id: str) -> tuple[str, Gradability]:
    with catalog.session() as s:
        task = s.get(t.Task, task_id)
        assert task is not None  # the partition's task (load_partition read it already)
        return task.name, task_gradability(task)


def grade_partition(catalog: Catalog, lake: Lake, run_id: str, model: str, task_id: str) -> GradeReport:
    """Rule grades of a partition, published as one file (also when nothing could be graded: then every
    row carries its reason). A task lm-eval would score with Python this product cannot run is graded by
    no rule at all; a grading fault is the rows' error, never an exception that would stop other tasks.
    Records the gradability as the partition's `grading`. The partition must exist."""
    model_key, task_key, rules, inputs_path, chunks = load_partition(catalog, run_id, model, task_id)
    task_name, gradability = _task(catalog, task_id)
    tables = [lake.read_table(p, columns=_GENERATION_COLUMNS) for p in chunks]
    generations = pa.concat_tables(tables).to_pylist() if tables else []
    inputs = {r["doc_id"]: r for r in lake.read_table(
        inputs_path, columns=["doc_id", "target", "doc", "continuations"]).to_pylist()}
    by_doc: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(generations, key=lambda r: r["request_index"]):
        by_doc[row["doc_id"]].append(row)
    rows: list[GradeRow] = []
    kinds = {r["request_kind"] for r in generations}
    try:
        if gradability.status == PREDICT_ONLY:
            pass
        elif gradability.status == REFUSED:
            reason = f"not gradable by rules: {gradability.reason}"
            rows.extend((d, "none", m, None, "rule", reason, None) for d in sorted(by_doc)
                        for m in rules.metric_names(["acc"]))
        elif gradability.status == REGISTRY:
            grade_with_registry(task_name, rules, by_doc, inputs, rows)
        elif rules.output_type == ROLLING or kinds == {ROLLING}:
            grade_rolling(rules, by_doc, inputs, rows)
        elif rules.output_type == "loglikelihood":
            _grade_loglikelihood(rules, by_doc, rows)
        elif rules.output_type == "multiple_choice" or kinds == {"loglikelihood"}:
            _grade_choices(rules, by_doc, inputs, rows)
        else:
            _grade_generations(rules, by_doc, inputs, rows)
    except Exception as e:  # noqa: BLE001  a fault of grading this task is its rows' error, not the run's
        reason = f"grading failed: {type(e).__name__}: {e}"
        rows = [(d, "none", m, None, "rule", reason, None) for d in sorted(by_doc) for m in rules.metric_names(["acc"])]
    path = grades_path(run_id, model_key, task_key)
    lake.write_table(path, grades_table(run_id, model, task_id, rows))
    with catalog.session() as s:  # the settings these grades were made with, for staleness
        run, task = cast(t.Run, s.get(t.Run, run_id)), cast(t.Task, s.get(t.Task, task_id))
        settings = grading_settings(task, run.judge_model, rubric_text(run.settings or {}))
        cast(t.RunPartition, s.get(t.RunPartition, (run_id, model, task_id))).grading = {
            **gradability.to_dict(), "settings": settings}
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _, f, m, score, _, err, _ in rows:
        if err is None and score is not None:
            sums[(m, f)].append(score)
    return GradeReport(path, len(by_doc), len(rows), len({r[0] for r in rows if r[5] is not None}),
                       {k: sum(v) / len(v) for k, v in sorted(sums.items())}, gradability)


def _grade_loglikelihood(rules: TaskRules, by_doc: dict[int, list[dict[str, Any]]], rows: list[GradeRow]) -> None:
    """A single continuation per doc (lambada-style): acc is whether it was the greedy one, as lm-eval."""
    for doc_id, doc_rows in sorted(by_doc.items()):
        error = generation_error(doc_rows)
        for m in rules.metric_names(["acc"]):
            if error is None and m == "acc":
                rows.append((doc_id, "none", m, float(bool(doc_rows[0]["is_greedy"])), "rule", None, None))
            elif error is None and m == "perplexity":  # lm-eval's item is the loglikelihood itself
                ll = doc_rows[0]["logprob"]
                rows.append((doc_id, "none", m, ll, "rule", None, [ll, 1.0]))
            else:
                rows.append((doc_id, "none", m, None, "rule", error or f"metric {m} is not graded by rule yet",
                             None))


def _grade_choices(rules: TaskRules, by_doc: dict[int, list[dict[str, Any]]], inputs: dict[int, dict[str, Any]],
                   rows: list[GradeRow]) -> None:
    metrics = rules.metric_names(["acc", "acc_norm"])
    labelled = [m for m in metrics if CORPUS_METRICS.get(m) and CORPUS_METRICS[m].kind == "label"]
    pairs: dict[int, tuple[int, int]] = {}  # doc -> (gold, pred) for f1/mcc, graded over the corpus below
    n_labels = 0
    for doc_id, doc_rows in sorted(by_doc.items()):
        error = generation_error(doc_rows)
        if error:
            rows.extend((doc_id, "none", m, None, "rule", error, None) for m in metrics)
            continue
        choices = choices_of(inputs[doc_id]["continuations"], rules.target_delimiter)
        gold = gold_index(logged_target(loads(inputs[doc_id]["target"])), choices)
        doc_rows = doc_rows[:len(choices)]  # the first of `repeats` copies, as lm-eval's take_first
        lls = [r["logprob"] for r in doc_rows]
        scores = multiple_choice_scores(rules, lls, [r["is_greedy"] for r in doc_rows], choices, gold)
        n_labels = max(n_labels, len(choices))
        if labelled and isinstance(gold, int) and gold >= 0:
            pairs[doc_id] = (gold, max(range(len(lls)), key=lls.__getitem__))
        for m in metrics:
            if m in labelled:
                if doc_id not in pairs:
                    rows.append((doc_id, "none", m, None, "rule", f"{m} needs a single gold choice", None))
            else:
                rows.append((doc_id, "none", m, scores.get(m), "rule",
                             None if m in scores else f"metric {m} is not graded for multiple choice", None))
    for m in labelled:
        docs = sorted(pairs)
        try:
            label_scores, stats = label_stats(m, [pairs[d][0] for d in docs], [pairs[d][1] for d in docs], n_labels)
            rows.extend((d, "none", m, sc, "rule", None, st) for d, sc, st in zip(docs, label_scores, stats.tolist()))
        except ValueError as e:
            rows.extend((d, "none", m, None, "rule", str(e), None) for d in docs)


def _grade_exact_match_batch(rules: TaskRules, by_doc: dict[int, list[dict[str, Any]]], doc_ids: list[int],
                             filter_name: str, predictions: list[str], golds: list[str], rows: list[GradeRow]) -> None:
    """The common case at scale (string answers, exact_match only), scored in one pass."""
    scores = exact_match_scores(predictions, golds, **rules.metric_kwargs("exact_match"))
    for doc_id, score in zip(doc_ids, scores):
        error = generation_error(by_doc[doc_id])
        rows.append((doc_id, filter_name, "exact_match", None if error else score, "rule", error, None))


def _grade_generations(rules: TaskRules, by_doc: dict[int, list[dict[str, Any]]], inputs: dict[int, dict[str, Any]],
                       rows: list[GradeRow]) -> None:
    doc_ids = sorted(by_doc)
    # every repeat's answer, in order: filters such as majority_vote and take_first_k consume them
    responses = [[r["output_text"] or "" for r in by_doc[d]] for d in doc_ids]
    docs = [loads(inputs[d]["doc"]) or {} for d in doc_ids]
    metrics = rules.metric_names(["exact_match"])
    golds = [generation_gold(rules, loads(inputs[d]["target"]), docs[i]) for i, d in enumerate(doc_ids)]
    texts = [m for m in metrics if CORPUS_METRICS.get(m) and CORPUS_METRICS[m].kind == "text"]
    metrics = [m for m in metrics if m not in texts]
    for filter_name, predictions in filtered_predictions(rules, responses, docs).items():
        for m in texts:
            _grade_text_corpus(m, by_doc, doc_ids, filter_name, predictions, golds, rows)
        if not metrics:
            continue
        if metrics == ["exact_match"] and all(isinstance(x, str) for x in [*predictions, *golds]):
            _grade_exact_match_batch(rules, by_doc, doc_ids, filter_name, predictions, golds, rows)
            continue
        for doc_id, prediction, gold in zip(doc_ids, predictions, golds):
            failed = generation_error(by_doc[doc_id])
            for m in metrics:  # one metric's fault leaves the doc's other scores standing
                score, error = None, failed
                if error is None:
                    try:
                        score = float(generation_scores(rules.only(m), prediction, gold)[m])
                    except (KeyError, TypeError, ValueError, IndexError) as e:  # e.g. a metric lm-eval lacks
                        error = f"not gradable by rule: {type(e).__name__}: {e}"
                rows.append((doc_id, filter_name, m, score, "rule", error, None))


def _grade_text_corpus(metric: str, by_doc: dict[int, list[dict[str, Any]]], doc_ids: list[int], filter_name: str,
                       predictions: list[Any], golds: list[Any], rows: list[GradeRow]) -> None:
    """bleu/chrf/ter: lm-eval's item is (gold, prediction) and its aggregate the sacrebleu corpus score."""
    ok = [i for i, d in enumerate(doc_ids) if generation_error(by_doc[d]) is None and not isinstance(golds[i], list)
          and isinstance(predictions[i], str)]
    stats: np.ndarray | list[list[float]]
    scores, stats = text_stats(metric, [str(golds[i]) for i in ok], [predictions[i] for i in ok]) if ok else ([], [])
    graded = {i: (sc, st) for i, sc, st in zip(ok, scores, [list(r) for r in stats])}
    for i, doc_id in enumerate(doc_ids):
        if i in graded:
            rows.append((doc_id, filter_name, metric, graded[i][0], "rule", None, graded[i][1]))
        else:
            rows.append((doc_id, filter_name, metric, None, "rule",
                         generation_error(by_doc[doc_id]) or f"{metric} needs one string gold and prediction", None))

