"""One (model, task) partition of a finished run as lm-evaluation-harness 0.4.13 writes a task: its
`samples_<task>_<ts>.jsonl` file (a line per (doc, filter), in lm-eval's shape) and what the task adds to its
model's results file (`results[task]`, its config, version, higher_is_better, n-samples and task hash).

The format as a whole, and where its numbers come from, is described in lm_eval_results.py.
"""
from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from eval_pipeline.exports.lm_eval_format import _gen_kwargs, _sanitize, doc_hash, dumps_sample, hash_string
from eval_pipeline.grading.generated_docs import task_rules
from eval_pipeline.grading.grade_files import active_grade_files
from eval_pipeline.harness.jsonio import loads
from eval_pipeline.results.metrics import metrics_path
from eval_pipeline.scoring.corpus import CORPUS_METRICS
from eval_pipeline.scoring.gradability import PREDICT_ONLY, REFUSED
from eval_pipeline.scoring.lm_eval_code import generation_gold
from eval_pipeline.scoring.rules import DEFAULT_FILTERS, TaskRules, filtered_predictions, higher_is_better
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake
from eval_pipeline.suites.tasks import task_gradability

_GEN_COLUMNS = ["doc_id", "request_index", "request_kind", "prompt", "continuation", "output_text", "logprob",
                "is_greedy", "error"]
_INPUT_COLUMNS = ["doc_id", "gen_kwargs", "target", "doc", "continuations"]
# Metrics of this product's own graders: a mean where higher is better.
@dataclass
class _Partition:
    """One (model, task) partition of the run as read from the catalog: the task's row, the lake paths of its
    inputs and generation chunks, its doc count and how it was graded ({"status", "reason"}, or None)."""

    model: str
    task_id: str
    task_name: str
    task: t.Task
    model_key: str
    task_key: str
    inputs_path: str | None
    n_docs: int
    chunks: list[str]
    grading: dict[str, Any] | None


@dataclass
class TaskOutput:
    """What one task contributes to its model's results file.

    `samples_file` is the samples file's name (in the model's folder) and `lines` its line count; `entry` is
    results[task], `config` configs[task], `version` versions[task] (a number, a text or None),
    `higher_is_better` {metric: bool or None}, `n_samples` {"original", "effective"} (docs), `task_hash` the
    hex sha256 of the lines' doc, prompt and target hashes in order (lm-eval's task_hashes[task]).
    """

    name: str
    samples_file: str
    lines: int
    entry: dict[str, Any]  # results[task]
    config: dict[str, Any]
    version: Any
    higher_is_better: dict[str, bool | None]
    n_samples: dict[str, int]
    task_hash: str


def _version(task: t.Task) -> int | float | str | None:
    """The task version the import recorded (`lm-eval-version:<v>` tag) as lm-eval wrote it: a number when it
    was one, else its text ("Yaml"); None when nothing was recorded."""
    label = next((tag.split(":", 1)[1] for tag in task.system_tags or [] if tag.startswith("lm-eval-version:")), None)
    if label is None:
        return None
    for kind in (int, float):
        try:
            return kind(label)
        except ValueError:
            pass
    return label


def task_config(task: t.Task, gradability: dict[str, Any] | None) -> dict[str, Any]:
    """The task's lm-eval config as far as the catalog kept it: metric_list, filter_list (only real filter
    chains), output_type, generation_kwargs and the grading keys (target_delimiter, fewshot_delimiter, repeats,
    doc_to_choice). What lm-eval has and the catalog does not (dataset, doc_to_text, num_fewshot) is absent.
    `gradability` ({"status", "reason"}) goes into `metadata.eval_pipeline` with the task's id."""
    grading = task.grading or {}
    cfg: dict[str, Any] = {"task": task.name}
    output_type = grading.get("output_type") or (task.type if task.type != "unknown" else None)
    for key in ("doc_to_choice", "target_delimiter", "fewshot_delimiter"):
        if key in grading:
            cfg[key] = grading[key]
    metric_list = [{k: v for k, v in m.items() if v is not None} for m in task.metric_spec or []
                   if isinstance(m, dict) and m.get("metric")]
    if metric_list:
        cfg["metric_list"] = metric_list
    if output_type:
        cfg["output_type"] = output_type
    if task.generation_defaults and output_type in (None, "generate_until"):
        cfg["generation_kwargs"] = task.generation_defaults
    cfg["repeats"] = grading.get("repeats", 1)
    filters = [f for f in task.filter_spec or [] if isinstance(f, dict) and f.get("filter")]
    if filters:
        cfg["filter_list"] = filters
    meta: dict[str, Any] = {}
    version = _version(task)
    if version is not None:
        meta["version"] = version
    meta["eval_pipeline"] = {"task_id": task.id, "gradability": gradability}
    cfg["metadata"] = meta
    return cfg


def _item(metric: str, grade: dict[str, Any], kind: str, gold: Callable[[], Any], prediction: Any) -> Any:
    """The per-sample value lm-eval logs for `metric`: the score, or its corpus item."""
    corpus = CORPUS_METRICS.get(metric)
    stats = grade["stats"]
    if corpus is not None and stats is not None:
        if corpus.kind == "weighted" and len(stats) == 2:  # (loglikelihood, words | bytes)
            return [stats[0], int(stats[1]) if float(stats[1]).is_integer() else stats[1]]
        if corpus.kind == "label":  # a one-hot cell of the gold x pred confusion matrix: lm-eval's (gold, pred)
            n = int(round(math.sqrt(len(stats))))
            cell = max(range(len(stats)), key=stats.__getitem__)
            return list(divmod(cell, n))
        if corpus.kind == "text":  # lm-eval's passthrough item: [gold, prediction]
            return [gold(), prediction]
    score = grade["score"]
    if grade["grader"] == "rule" and score is not None and float(score).is_integer() and (
            (kind == "loglikelihood" and metric == "acc") or (kind == "multiple_choice" and metric == "exact_match")):
        return int(score)  # lm-eval's int(is_greedy)
    return score


class _PartitionWriter:
    """Writes one partition's samples file from the lake's generation chunks, task inputs, grade files and
    metrics file, and builds what the task adds to the results file."""

    def __init__(self, catalog: Catalog, lake: Lake, run: t.Run, p: _Partition) -> None:
        self.lake, self.run, self.p = lake, run, p
        self.rules = task_rules(p.task)
        self.gradability: dict[str, Any] = p.grading or task_gradability(p.task).to_dict()
        status = self.gradability.get("status")
        self.predict_only, self.refused = status == PREDICT_ONLY, status == REFUSED
        self.output_type = self.rules.output_type

    def _generations(self) -> dict[int, list[dict[str, Any]]]:
        """doc -> its generation rows in request order, docs in order."""
        by_doc: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for chunk in self.p.chunks:
            for r in self.lake.read_table(chunk, columns=_GEN_COLUMNS).to_pylist():
                by_doc[r["doc_id"]].append(r)
        for rows in by_doc.values():
            rows.sort(key=lambda r: r["request_index"])
        return dict(sorted(by_doc.items()))

    def _inputs(self, doc_ids: set[int]) -> dict[int, dict[str, Any]]:
        """doc -> its task inputs row (gen_kwargs, target, doc as JSON text; continuations), for `doc_ids`."""
        if not self.p.inputs_path:
            return {}
        rows = self.lake.read_table(self.p.inputs_path, columns=_INPUT_COLUMNS).to_pylist()
        return {r["doc_id"]: r for r in rows if r["doc_id"] in doc_ids}

    def _grades(self) -> dict[tuple[int, str], dict[str, dict[str, Any]]]:
        """(doc, filter) -> metric -> grade row, from the run's current graders; what could not be graded is
        left out, and so are rule grades of a task no rule can grade (as its metrics leave them out)."""
        out: dict[tuple[int, str], dict[str, dict[str, Any]]] = defaultdict(dict)
        self.filter_order: list[str] = []
        for path in active_grade_files(self.lake, self.run, self.p.model_key, self.p.task_key):
            for g in self.lake.read_table(path, columns=["doc_id", "filter", "metric", "score", "grader", "error",
                                                         "stats"]).to_pylist():
                if g["filter"] not in self.filter_order:
                    self.filter_order.append(g["filter"])
                if g["error"] is not None or (g["score"] is None and g["stats"] is None):
                    continue
                if self.refused and g["grader"] == "rule":
                    continue
                out[(g["doc_id"], g["filter"])][g["metric"]] = g
        return out

    def _metrics(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(metric, filter) -> the partition's metrics row (value, stderr, n...); empty with no metrics file."""
        path = metrics_path(self.run.id, self.p.model_key, self.p.task_key)
        if not self.lake.exists(path):
            return {}
        return {(r["metric"], r["filter"]): r for r in self.lake.read_table(path).to_pylist()}

    def write(self, path: Path) -> TaskOutput:
        """Write the samples file at `path` (overwritten) and return what the task adds to the results file."""
        gens = self._generations()
        inputs = self._inputs(set(gens))
        grades = self._grades()
        aggregates = self._metrics()
        doc_ids = list(gens)
        docs = {d: loads(inputs[d]["doc"]) if d in inputs and inputs[d]["doc"] is not None else None for d in doc_ids}
        targets = {d: loads(inputs[d]["target"]) if d in inputs and inputs[d]["target"] is not None else None
                   for d in doc_ids}
        kind = "generate_until" if any(rows[0]["request_kind"] == "generate_until" for rows in gens.values()) \
            else self.output_type
        # filters: the task's chain for generated answers ("none", lm-eval's take_first, for the rest), then any
        # other filter a grader named
        generated = kind == "generate_until"
        chain = [f["name"] for f in (self.rules.filters or DEFAULT_FILTERS)] if generated else ["none"]
        self.line_filters = chain
        filters = list(dict.fromkeys(chain + self.filter_order))
        filtered: dict[str, list[Any]] = {}
        if generated and doc_ids:
            responses = [[r["output_text"] or "" for r in gens[d]] for d in doc_ids]
            try:
                filtered = {name: list(values) for name, values in filtered_predictions(
                    self.rules, responses, [docs[d] or {} for d in doc_ids]).items()}
            except Exception:  # noqa: BLE001  a chain that cannot run here: lm-eval's take_first stands in
                filtered = {}
        metric_order = [m["metric"] for m in self.p.task.metric_spec or [] if isinstance(m, dict) and m.get("metric")]
        counts: dict[tuple[str, str], int] = defaultdict(int)
        task_hash = hashlib.sha256()
        lines = 0
        with open(path, "w", encoding="utf-8") as out:
            for filter_name in filters:
                chain_values = filtered.get(filter_name) or [None] * len(doc_ids)
                for i, d in enumerate(doc_ids):
                    sample = self._sample(d, gens[d], inputs.get(d), docs[d], targets[d], filter_name, chain_values[i],
                                          grades.get((d, filter_name), {}), metric_order, kind, generation_gold)
                    if sample is None:
                        continue
                    for m in sample["metrics"]:
                        counts[(m, filter_name)] += 1
                    task_hash.update((sample["doc_hash"] + sample["prompt_hash"] + sample["target_hash"]).encode())
                    out.write(dumps_sample(sample))
                    lines += 1
        entry, hib = self._entry(filters, metric_order, aggregates, counts, len(doc_ids))
        sample_len = entry["sample_len"]
        return TaskOutput(self.p.task_name, path.name, lines, entry, task_config(self.p.task, self.gradability),
                          _version(self.p.task), hib, {"original": self.p.n_docs or len(doc_ids),
                                                       "effective": sample_len}, task_hash.hexdigest())

    def _sample(self, doc_id: int, rows: list[dict[str, Any]], inputs: dict[str, Any] | None, doc: Any, target: Any,
                filter_name: str, chain_value: Any, doc_grades: dict[str, dict[str, Any]], metric_order: list[str],
                kind: str, generation_gold: Callable[[TaskRules, Any, dict[str, Any]], Any]) -> dict[str, Any] | None:
        """The samples line of one (doc, filter) as lm-eval's evaluator.py `evaluate` logs it, or None when
        the filter is not the task's own and scored nothing for this doc."""
        first = rows[0]["request_kind"]
        conts = (inputs or {}).get("continuations") or []
        n = len(conts) if first == "loglikelihood" and conts and len(rows) % len(conts) == 0 else (
            len(rows) if first == "loglikelihood" else 1)
        requests = [rows[j::n] for j in range(n)]  # the `repeats` copies of request j follow each other by n
        failed = any(r["error"] for r in rows)

        def answer(r: dict[str, Any]) -> Any:
            if r["error"]:
                return None
            if r["request_kind"] == "loglikelihood":
                return (r["logprob"], r["is_greedy"])
            if r["request_kind"] == "loglikelihood_rolling":
                return r["logprob"]
            return r["output_text"]

        if first == "generate_until":
            task_kwargs = loads(inputs["gen_kwargs"]) if inputs and inputs.get("gen_kwargs") else {}
            kwargs = _gen_kwargs(task_kwargs or {}, self.run.generation or {})
            arguments = {f"gen_args_{j}": {"arg_0": req[0]["prompt"], "arg_1": kwargs}
                         for j, req in enumerate(requests)}
        elif first == "loglikelihood":
            arguments = {f"gen_args_{j}": {"arg_0": req[0]["prompt"], "arg_1": req[0]["continuation"]}
                         for j, req in enumerate(requests)}
        else:
            arguments = {f"gen_args_{j}": {"arg_0": req[0]["prompt"]} for j, req in enumerate(requests)}
        resps = [[answer(r) for r in req] for req in requests]
        if first == "generate_until" and chain_value is not None and not failed:
            filtered_resps = [chain_value]
        else:  # take_first of each request's answers
            filtered_resps = [answers[0] if answers else None for answers in resps]
        prediction = chain_value if chain_value is not None else (filtered_resps[0] if filtered_resps else None)
        values: dict[str, Any] = {}
        if self.predict_only:
            values["bypass"] = None  # lm-eval's --predict_only: every sample's bypass is null
        names = [m for m in metric_order if m in doc_grades] + [m for m in doc_grades if m not in metric_order]
        for m in names:
            values[m] = _item(m, doc_grades[m], kind, lambda: generation_gold(self.rules, target, doc or {}),
                              prediction)
        if not values and filter_name not in self.line_filters:
            return None  # a filter some grader named but that scored nothing for this doc
        target_text = target if isinstance(target, str) else str(target)
        sample: dict[str, Any] = {
            "doc_id": doc_id, "doc": doc, "target": target_text, "arguments": arguments,
            "resps": _sanitize(resps), "filtered_resps": _sanitize(filtered_resps), "filter": filter_name,
            "metrics": list(values), "doc_hash": doc_hash(doc), "prompt_hash": hash_string(requests[0][0]["prompt"]),
            "target_hash": hash_string(target_text),
        }
        sample.update(values)
        return sample

    def _entry(self, filters: list[str], metric_order: list[str], aggregates: dict[tuple[str, str], dict[str, Any]],
               counts: dict[tuple[str, str], int], n_docs: int) -> tuple[dict[str, Any], dict[str, bool | None]]:
        """results[task] as lm-eval 0.4.13 writes it, and the task's higher_is_better."""
        entry: dict[str, Any] = {"name": self.p.task_name, "alias": self.p.task_name}
        hib: dict[str, bool | None] = {}
        keys = [k for k, r in aggregates.items() if r["value"] is not None]
        filter_rank = {f: i for i, f in enumerate(filters)}
        metric_rank = {m: i for i, m in enumerate(metric_order)}
        keys.sort(key=lambda k: (filter_rank.get(k[1], len(filter_rank)), k[1],
                                 metric_rank.get(k[0], len(metric_rank)), k[0]))
        bypass = [f for f in filters if ("bypass", f) in counts] if self.predict_only else []
        counted = keys + [("bypass", f) for f in bypass]
        entry["sample_len"] = (max(counts.get(k, 0) for k in counted) if counted else
                               n_docs if self.refused else 0)
        for f in bypass:
            entry[f"bypass,{f}"] = 999  # lm-eval's placeholder; the import keeps it as no value
            entry[f"bypass_stderr,{f}"] = "N/A"
            hib["bypass"] = True
        for metric, filter_name in keys:
            row = aggregates[(metric, filter_name)]
            entry[f"{metric},{filter_name}"] = row["value"]
            stderr = row["stderr"]
            entry[f"{metric}_stderr,{filter_name}"] = (stderr if stderr is not None and math.isfinite(stderr)
                                                      and (row["n"] or 0) > 1 else "N/A")
            hib.setdefault(metric, higher_is_better(self.p.task.metric_spec, metric))
        for m in metric_order:  # metrics of the config that scored nothing still say which way is better
            if m not in hib and not self.refused and not self.predict_only:
                hib[m] = higher_is_better(self.p.task.metric_spec, m)
        return entry, hib

