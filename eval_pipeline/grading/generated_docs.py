"""A partition's generations read back per doc, joined with the task's inputs: what was asked, answered
(for multiple choice, the highest-loglikelihood choice) and expected, with tokens and errors. The judge, the
embedding grader, human grading, the samples the API serves and the bundles read them."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select

from eval_pipeline.harness.jsonio import loads
from eval_pipeline.scoring.lm_eval_code import generation_error
from eval_pipeline.scoring.rules import TaskRules, choices_of, gold_index
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake


def task_rules(task: t.Task) -> TaskRules:
    """The task's rules: its metric_list and filter_list as imported (names alone mean lm-eval's default
    take_first chain), and the grading settings kept from its config."""
    filters = [f for f in task.filter_spec if isinstance(f, dict) and f.get("filter")]
    metrics = [m for m in task.metric_spec if isinstance(m, dict) and m.get("metric")]
    return TaskRules.from_config({**task.grading, "metric_list": metrics, "filter_list": filters},
                                 output_type=task.type)


def load_partition(catalog: Catalog, run_id: str, model: str, task_id: str
                   ) -> tuple[str, str, TaskRules, str, list[str]]:
    """(model key, task key, the task's rules, the lake path of its inputs, the lake paths of the
    partition's chunks) of a partition, which must exist."""
    with catalog.session() as s:
        part = s.get(t.RunPartition, (run_id, model, task_id))
        task = s.get(t.Task, task_id)
        assert part is not None and task is not None  # a partition being graded, and its task (foreign key)
        inputs_path = s.scalar(select(t.File.path).join(t.TaskVersion, t.TaskVersion.inputs_file_id == t.File.id)
                               .where(t.TaskVersion.task_id == task_id, t.TaskVersion.version == part.task_version))
        chunks = [c["path"] for c in part.chunks]
        # a run plans partitions only for task versions with inputs
        return part.model_key, part.task_key, task_rules(task), cast(str, inputs_path), chunks


@dataclass
class DocAnswer:
    """One doc of a partition as a reader sees it: what was asked, answered and expected."""

    doc_id: int
    kind: str  # the first request's kind
    prompt: str
    prediction: str | None  # generated text; for multiple choice the highest-loglikelihood choice
    reference: str  # the expected answer (the gold choice's text for multiple choice)
    error: str | None  # a failed generation
    input_tokens: int = 0
    output_tokens: int = 0
    doc: dict[str, Any] | None = None  # the dataset row, when asked for


def generation_docs(catalog: Catalog, lake: Lake, run_id: str, model: str, task_id: str, *,
                    with_doc: bool = False) -> list[DocAnswer]:
    """Every generated doc of a partition (which must exist), by doc id, with the dataset row when
    `with_doc`; a doc's `error` is its first failed request ("generation failed: ...") or None."""
    _, _, rules, inputs_path, chunks = load_partition(catalog, run_id, model, task_id)
    columns = ["doc_id", "request_index", "request_kind", "prompt", "output_text", "logprob", "error",
               "input_tokens", "output_tokens"]
    by_doc: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for chunk in chunks:
        for r in lake.read_table(chunk, columns=columns).to_pylist():
            by_doc[r["doc_id"]].append(r)
    input_columns = ["doc_id", "target", "continuations"] + (["doc"] if with_doc else [])
    inputs = {r["doc_id"]: r for r in lake.read_table(inputs_path, columns=input_columns).to_pylist()}
    out = []
    for doc_id in sorted(by_doc):
        reqs = sorted(by_doc[doc_id], key=lambda r: r["request_index"])
        target = loads(inputs[doc_id]["target"]) if doc_id in inputs else None
        prediction, reference = reqs[0]["output_text"], _text(target)
        if reqs[0]["request_kind"] == "loglikelihood":
            choices = choices_of(inputs[doc_id]["continuations"], rules.target_delimiter)
            lls = [r["logprob"] for r in reqs]
            prediction = (choices[max(range(len(lls)), key=lls.__getitem__)]
                          if len(lls) == len(choices) and all(x is not None for x in lls) else None)
            gold = gold_index(target, choices)
            if isinstance(gold, int) and gold >= 0:
                reference = choices[gold]
        out.append(DocAnswer(doc_id, reqs[0]["request_kind"], reqs[0]["prompt"], prediction, reference or "",
                             generation_error(reqs), sum(r["input_tokens"] or 0 for r in reqs),
                             sum(r["output_tokens"] or 0 for r in reqs),
                             loads(inputs[doc_id]["doc"]) if with_doc and doc_id in inputs else None))
    return out


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)

