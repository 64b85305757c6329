"""Rule grades of one (model, task) partition of a run: its generations joined with the task's inputs
(targets, choices), scored by rules.py, published as one atomic Parquet file."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
from sqlalchemy import select

from eval_pipeline.catalog import Catalog
from eval_pipeline.catalog import tables as t
from eval_pipeline.grading.rules import (TaskRules, choices_of, exact_match_scores, filtered_predictions,
                                         generation_scores, gold_index, multiple_choice_scores)
from eval_pipeline.harness.jsonio import loads
from eval_pipeline.lake import Lake

GRADES_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("task_id", pa.string()), ("doc_id", pa.int64()),
    ("filter", pa.string()), ("metric", pa.string()), ("score", pa.float64()), ("grader", pa.string()),
    ("error", pa.string()),
])
_GENERATION_COLUMNS = ["doc_id", "request_index", "request_kind", "output_text", "logprob", "is_greedy", "error"]


@dataclass
class GradeReport:
    path: str
    docs: int
    rows: int
    failed_docs: int
    means: dict[tuple[str, str], float]  # (metric, filter) -> mean over graded docs


def grades_path(run_id: str, model_key: str, task_key: str) -> str:
    return f"grades/{run_id}/{model_key}/{task_key}/rules.parquet"


def task_rules(task: t.Task) -> TaskRules:
    """The task's rules: its metric_list and filter_list as imported (names alone mean lm-eval's default
    take_first chain), and the grading settings kept from its config."""
    filters = [f for f in task.filter_spec if isinstance(f, dict) and f.get("filter")]
    metrics = [m for m in task.metric_spec if isinstance(m, dict) and m.get("metric")]
    return TaskRules.from_config({**task.grading, "metric_list": metrics, "filter_list": filters},
                                 output_type=task.type)


def _load(catalog: Catalog, run_id: str, model: str, task_id: str):
    with catalog.session() as s:
        part = s.get(t.RunPartition, (run_id, model, task_id))
        task = s.get(t.Task, task_id)
        inputs_path = s.scalar(select(t.File.path).join(t.TaskVersion, t.TaskVersion.inputs_file_id == t.File.id)
                               .where(t.TaskVersion.task_id == task_id, t.TaskVersion.version == part.task_version))
        chunks = [c["path"] for c in part.chunks]
        return part.model_key, part.task_key, task_rules(task), inputs_path, chunks


def grade_partition(catalog: Catalog, lake: Lake, run_id: str, model: str, task_id: str) -> GradeReport:
    model_key, task_key, rules, inputs_path, chunks = _load(catalog, run_id, model, task_id)
    generations = pa.concat_tables([lake.read_table(p, columns=_GENERATION_COLUMNS) for p in chunks]).to_pylist()
    inputs = {r["doc_id"]: r for r in lake.read_table(
        inputs_path, columns=["doc_id", "target", "doc", "continuations"]).to_pylist()}
    by_doc: dict[int, list[dict]] = defaultdict(list)
    for row in sorted(generations, key=lambda r: r["request_index"]):
        by_doc[row["doc_id"]].append(row)
    rows: list[tuple] = []
    if rules.output_type == "loglikelihood":
        _grade_loglikelihood(rules, by_doc, rows)
    elif rules.output_type == "multiple_choice" or all(r["request_kind"] == "loglikelihood" for r in generations):
        _grade_choices(rules, by_doc, inputs, rows)
    else:
        _grade_generations(rules, by_doc, inputs, rows)
    n = len(rows)
    columns = list(zip(*rows)) if rows else [()] * 6
    table = pa.table([[run_id] * n, [model] * n, [task_id] * n, *map(list, columns)], schema=GRADES_SCHEMA)
    path = grades_path(run_id, model_key, task_key)
    lake.write_table(path, table)
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _, f, m, score, _, err in rows:
        if err is None and score is not None:
            sums[(m, f)].append(score)
    return GradeReport(path, len(by_doc), n, len({r[0] for r in rows if r[5] is not None}),
                       {k: sum(v) / len(v) for k, v in sorted(sums.items())})


def _failed(rows_of_doc: list[dict]) -> str | None:
    errors = [r["error"] for r in rows_of_doc if r["error"]]
    return f"generation failed: {errors[0]}" if errors else None


def _grade_loglikelihood(rules: TaskRules, by_doc: dict, rows: list) -> None:
    """A single continuation per doc (lambada-style): acc is whether it was the greedy one, as lm-eval."""
    for doc_id, doc_rows in sorted(by_doc.items()):
        error = _failed(doc_rows)
        for m in rules.metric_names(["acc"]):
            if error is None and m == "acc":
                rows.append((doc_id, "none", m, float(bool(doc_rows[0]["is_greedy"])), "rule", None))
            else:
                rows.append((doc_id, "none", m, None, "rule", error or f"metric {m} is not graded by rule yet"))


def _grade_choices(rules: TaskRules, by_doc: dict, inputs: dict, rows: list) -> None:
    metrics = rules.metric_names(["acc", "acc_norm"])
    for doc_id, doc_rows in sorted(by_doc.items()):
        error = _failed(doc_rows)
        if error:
            rows.extend((doc_id, "none", m, None, "rule", error) for m in metrics)
            continue
        choices = choices_of(inputs[doc_id]["continuations"], rules.target_delimiter)
        gold = gold_index(loads(inputs[doc_id]["target"]), choices)
        scores = multiple_choice_scores(rules, [r["logprob"] for r in doc_rows], [r["is_greedy"] for r in doc_rows],
                                        choices, gold)
        rows.extend((doc_id, "none", m, scores.get(m), "rule",
                     None if m in scores else f"metric {m} is not graded for multiple choice") for m in metrics)


def _grade_exact_match_batch(rules: TaskRules, by_doc: dict, doc_ids: list[int], filter_name: str,
                             predictions: list[str], golds: list[str], rows: list) -> None:
    """The common case at scale (string answers, exact_match only), scored in one pass."""
    scores = exact_match_scores(predictions, golds, **rules.metric_kwargs("exact_match"))
    for doc_id, score in zip(doc_ids, scores):
        error = _failed(by_doc[doc_id])
        rows.append((doc_id, filter_name, "exact_match", None if error else score, "rule", error))


def _grade_generations(rules: TaskRules, by_doc: dict, inputs: dict, rows: list) -> None:
    doc_ids = sorted(by_doc)
    responses = [[by_doc[d][0]["output_text"] or ""] for d in doc_ids]
    docs = [loads(inputs[d]["doc"]) or {} for d in doc_ids]
    metrics = rules.metric_names(["exact_match"])
    golds = [loads(inputs[d]["target"]) for d in doc_ids]
    for filter_name, predictions in filtered_predictions(rules, responses, docs).items():
        if metrics == ["exact_match"] and all(isinstance(x, str) for x in [*predictions, *golds]):
            _grade_exact_match_batch(rules, by_doc, doc_ids, filter_name, predictions, golds, rows)
            continue
        for doc_id, prediction in zip(doc_ids, predictions):
            error = _failed(by_doc[doc_id])
            if error is None:
                try:
                    scores = generation_scores(rules, prediction, loads(inputs[doc_id]["target"]))
                except (KeyError, TypeError, ValueError) as e:  # a task-specific metric lm-eval's registry lacks
                    scores, error = {}, f"not gradable by rule: {type(e).__name__}: {e}"
            rows.extend((doc_id, filter_name, m, None if error else float(scores[m]), "rule", error)
                        for m in metrics)
