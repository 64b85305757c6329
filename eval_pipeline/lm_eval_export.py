"""A finished run written as lm-evaluation-harness 0.4.13 writes its `--output_path ... --log_samples` output.

Per model a folder `<model_name_sanitized>/` holding `results_<ts>.json` and one `samples_<task>_<ts>.jsonl`
per task, in lm-eval's shapes byte for byte (its evaluator.py and loggers/evaluation_tracker.py: the same
json.dumps calls with its `handle_non_serializable`, its `sanitize_list` and `hash_string`):

- a samples line per (doc, filter), filters in the task's order and docs in order within each: `doc_id`,
  `doc`, `target` (`str()` of it), `arguments` ({gen_args_i: {arg_0: context, arg_1: continuation or
  gen_kwargs}}, one per request; a loglikelihood_rolling request has arg_0 alone), `resps` (per request the
  answers of its `repeats` copies: [ll, is_greedy] as strings, the loglikelihood as a string, or the text),
  `filtered_resps` (per request the filter chain's answer, as strings), `filter`, `metrics` (names), the
  sha256 `doc_hash`, `prompt_hash`, `target_hash`, and one key per metric: the score, or lm-eval's item
  for metrics aggregated over the corpus ((ll, words|bytes) for the weighted perplexities, (gold, pred) for
  f1/mcc, (gold, prediction) for bleu/chrf/ter).
- results: `results` {task: {name, alias, sample_len, "metric,filter", "metric_stderr,filter"}} (stderr
  "N/A" where there is none, and for a single sample, as lm-eval), `group_subtasks`, `configs`, `versions`,
  `n-shot`, `higher_is_better`, `n-samples`, `config`, the environment keys and `task_hashes`.

Numbers come from the run's grades (per sample) and metrics files (aggregates), never recomputed here. A
task graded by no rule keeps what exists: lm-eval's predict-only shape (`bypass`: null per sample, 999 in
results, which is lm-eval's own placeholder and which the import reads as no value) or, for a task no rule
can grade, lines with no metric and a results entry with none; the reason is in the task's config
`metadata.eval_pipeline.gradability`. Samples whose generation failed keep their line with null answers
and no metric (lm-eval has no such sample: it stops). Scores of the run's judge, embedding model or people
are metrics of their own (`judge_score`...) under the filter they were graded with.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select

from eval_pipeline.catalog import Catalog
from eval_pipeline.catalog import tables as t
from eval_pipeline.harness.jsonio import loads
from eval_pipeline.lake import Lake

_GEN_COLUMNS = ["doc_id", "request_index", "request_kind", "prompt", "continuation", "output_text", "logprob",
                "is_greedy", "error"]
_INPUT_COLUMNS = ["doc_id", "gen_kwargs", "target", "doc", "continuations"]
# The run's generation settings in lm-eval's gen_kwargs words (what its --gen_kwargs would have said).
_GEN_KWARGS = {"stop": "until", "max_output_tokens": "max_gen_toks", "temperature": "temperature",
               "do_sample": "do_sample", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
               "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
               "repetition_penalty": "repetition_penalty", "seed": "seed"}
# Metrics of this product's own graders: a mean where higher is better.
_OWN_METRICS = {"judge_score": True, "embedding_similarity": True, "human_score": True, "numeric_match": True}


def _lm_eval_utils():
    from lm_eval import utils

    return utils


def dumps_sample(sample: dict) -> str:
    """One samples line as lm-eval's save_results_samples writes it."""
    return json.dumps(sample, default=_lm_eval_utils().handle_non_serializable, ensure_ascii=False) + "\n"


def dumps_results(results: dict) -> str:
    return json.dumps(results, indent=2, default=_lm_eval_utils().handle_non_serializable, ensure_ascii=False)


def _sanitize(value: Any) -> Any:
    """lm-eval's sanitize_list (every leaf as its str()), except that a missing answer stays null rather than
    becoming the text "None"."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_sanitize(v) for v in value)
    return str(value)


def hash_string(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def doc_hash(doc: Any) -> str:
    return hash_string(json.dumps(doc, indent=2, default=_lm_eval_utils().handle_non_serializable,
                                  ensure_ascii=False))


def samples_task_name(name: str) -> str:
    """The task's name in its samples file name: as it is (lm-eval's), unless it could leave the folder."""
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        return _lm_eval_utils().sanitize_task_name(name)
    return name


def file_timestamp(unix_seconds: float | None) -> str:
    """lm-eval's `<ts>`: isoformat with ':' as '-' (no fraction when the microseconds are 0). UTC here, so an
    export of the same run names its files the same wherever it is made."""
    moment = datetime.fromtimestamp(unix_seconds, timezone.utc) if unix_seconds else datetime.now(timezone.utc)
    return moment.replace(tzinfo=None).isoformat().replace(":", "-")


# --- one partition ------------------------------------------------------------------------------------

@dataclass
class _Partition:
    model: str
    task_id: str
    task_name: str
    task: t.Task
    model_key: str
    task_key: str
    inputs_path: str | None
    n_docs: int
    chunks: list[str]
    grading: dict | None


@dataclass
class TaskOutput:
    """What one task contributes to its model's results file."""

    name: str
    samples_file: str
    lines: int
    entry: dict  # results[task]
    config: dict
    version: Any
    higher_is_better: dict
    n_samples: dict
    task_hash: str


def _version(task: t.Task) -> Any:
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


def task_config(task: t.Task, gradability: dict | None) -> dict:
    """The task's lm-eval config as far as the catalog kept it: metric_list, filter_list (only real filter
    chains), output_type, generation_kwargs and the grading keys (target_delimiter, fewshot_delimiter, repeats,
    doc_to_choice). What lm-eval has and the catalog does not (dataset, doc_to_text, num_fewshot) is absent."""
    grading = task.grading or {}
    cfg: dict = {"task": task.name}
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
    meta: dict = {}
    version = _version(task)
    if version is not None:
        meta["version"] = version
    meta["eval_pipeline"] = {"task_id": task.id, "gradability": gradability}
    cfg["metadata"] = meta
    return cfg


def _gen_kwargs(task_kwargs: dict, run_generation: dict) -> dict:
    """A generate_until request's gen_kwargs as lm-eval logs them: the task's, with the run's settings over
    them where the run set them (as lm-eval's --gen_kwargs)."""
    out = dict(task_kwargs or {})
    for ours, theirs in _GEN_KWARGS.items():
        if run_generation.get(ours) is not None:
            out[theirs] = run_generation[ours]
    return out


def _higher_is_better(task: t.Task, metric: str) -> bool | None:
    from eval_pipeline.grading.rules import _lm_eval

    for m in task.metric_spec or []:
        if isinstance(m, dict) and m.get("metric") == metric and isinstance(m.get("higher_is_better"), bool):
            return m["higher_is_better"]
    if metric in _OWN_METRICS:
        return _OWN_METRICS[metric]
    return _lm_eval().higher_is_better_registry.get(metric, None)


def _item(metric: str, grade: dict, kind: str, gold: Callable[[], Any], prediction: Any) -> Any:
    """The per-sample value lm-eval logs for `metric`: the score, or its corpus item."""
    from eval_pipeline.grading.corpus import CORPUS_METRICS

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
    def __init__(self, catalog: Catalog, lake: Lake, run: t.Run, p: _Partition):
        from eval_pipeline.grading.gradability import PREDICT_ONLY, REFUSED
        from eval_pipeline.grading.partition import task_rules
        from eval_pipeline.tasks import task_gradability

        self.lake, self.run, self.p = lake, run, p
        self.rules = task_rules(p.task)
        self.gradability = p.grading or task_gradability(p.task).to_dict()
        status = self.gradability.get("status")
        self.predict_only, self.refused = status == PREDICT_ONLY, status == REFUSED
        self.output_type = self.rules.output_type

    def _generations(self) -> dict[int, list[dict]]:
        by_doc: dict[int, list[dict]] = defaultdict(list)
        for chunk in self.p.chunks:
            for r in self.lake.read_table(chunk, columns=_GEN_COLUMNS).to_pylist():
                by_doc[r["doc_id"]].append(r)
        for rows in by_doc.values():
            rows.sort(key=lambda r: r["request_index"])
        return dict(sorted(by_doc.items()))

    def _inputs(self, doc_ids: set[int]) -> dict[int, dict]:
        if not self.p.inputs_path:
            return {}
        rows = self.lake.read_table(self.p.inputs_path, columns=_INPUT_COLUMNS).to_pylist()
        return {r["doc_id"]: r for r in rows if r["doc_id"] in doc_ids}

    def _grades(self) -> dict[tuple[int, str], dict[str, dict]]:
        """(doc, filter) -> metric -> grade row, from the run's current graders; what could not be graded is
        left out, and so are rule grades of a task no rule can grade (as its metrics leave them out)."""
        from eval_pipeline.grading.partition import active_grade_files

        out: dict[tuple[int, str], dict[str, dict]] = defaultdict(dict)
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

    def _metrics(self) -> dict[tuple[str, str], dict]:
        from eval_pipeline.metrics import metrics_path

        path = metrics_path(self.run.id, self.p.model_key, self.p.task_key)
        if not self.lake.exists(path):
            return {}
        return {(r["metric"], r["filter"]): r for r in self.lake.read_table(path).to_pylist()}

    def write(self, path: Path) -> TaskOutput:
        from eval_pipeline.grading.lm_eval_code import generation_gold
        from eval_pipeline.grading.rules import DEFAULT_FILTERS, filtered_predictions

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
        filtered: dict[str, list] = {}
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

    def _sample(self, doc_id: int, rows: list[dict], inputs: dict | None, doc: Any, target: Any, filter_name: str,
                chain_value: Any, doc_grades: dict[str, dict], metric_order: list[str], kind: str,
                generation_gold) -> dict | None:
        first = rows[0]["request_kind"]
        conts = (inputs or {}).get("continuations") or []
        n = len(conts) if first == "loglikelihood" and conts and len(rows) % len(conts) == 0 else (
            len(rows) if first == "loglikelihood" else 1)
        requests = [rows[j::n] for j in range(n)]  # the `repeats` copies of request j follow each other by n
        failed = any(r["error"] for r in rows)

        def answer(r: dict) -> Any:
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
        sample = {
            "doc_id": doc_id, "doc": doc, "target": target_text, "arguments": arguments,
            "resps": _sanitize(resps), "filtered_resps": _sanitize(filtered_resps), "filter": filter_name,
            "metrics": list(values), "doc_hash": doc_hash(doc), "prompt_hash": hash_string(requests[0][0]["prompt"]),
            "target_hash": hash_string(target_text),
        }
        sample.update(values)
        return sample

    def _entry(self, filters: list[str], metric_order: list[str], aggregates: dict, counts: dict,
               n_docs: int) -> tuple[dict, dict]:
        """results[task] as lm-eval 0.4.13 writes it, and the task's higher_is_better."""
        entry: dict = {"name": self.p.task_name, "alias": self.p.task_name}
        hib: dict = {}
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
            hib.setdefault(metric, _higher_is_better(self.p.task, metric))
        for m in metric_order:  # metrics of the config that scored nothing still say which way is better
            if m not in hib and not self.refused and not self.predict_only:
                hib[m] = _higher_is_better(self.p.task, m)
        return entry, hib


# --- the whole run -------------------------------------------------------------------------------------

def _partitions(s, run: t.Run) -> list[_Partition]:
    parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run.id)).all()
    out = []
    for part in parts:
        task = s.get(t.Task, part.task_id)
        tv = s.get(t.TaskVersion, (part.task_id, part.task_version))
        inputs_path = s.scalar(select(t.File.path).where(t.File.id == tv.inputs_file_id)) if tv and \
            tv.inputs_file_id else None
        s.expunge(task)
        out.append(_Partition(part.model, part.task_id, task.name, task, part.model_key, part.task_key, inputs_path,
                              tv.n_docs if tv else 0, [c["path"] for c in part.chunks or []],
                              dict(part.grading) if part.grading else None))
    return out


def _model_config(row: t.Model | None, engine: dict | None) -> tuple[str | None, dict, dict]:
    """(lm-eval's model source, its model_args, extra config keys) of a registered model. Headers and the
    API key's variable are left out: a bundle carries no credentials."""
    engine = engine or {}
    if row is None:
        return None, {}, {}
    o = row.options or {}
    if row.backend == "vllm":
        args = {"pretrained": o.get("path"), "dtype": o.get("dtype", "auto")}
        for key in ("revision", "max_model_len", "add_bos_token"):
            if o.get(key) is not None:
                args[key] = o[key]
        if (o.get("tensor_parallel_size") or 1) > 1:
            args["tensor_parallel_size"] = o["tensor_parallel_size"]
        extra = {"model_dtype": engine.get("dtype"), "model_revision": o.get("revision")}
        return "vllm", args, extra
    if row.backend == "openai":
        api = o.get("api", "completions")
        url = (o.get("base_url") or "").rstrip("/") + ("/chat/completions" if api == "chat" else "/completions")
        args = {"model": o.get("served_name") or row.name, "base_url": url}
        for key in ("tokenizer", "max_length", "add_bos_token"):
            if o.get(key) is not None:
                args[key] = o[key]
        return ("local-chat-completions" if api == "chat" else "local-completions"), args, {}
    return row.backend, {}, {}


def _tokenizer_info(row: t.Model | None, engine: dict | None) -> dict:
    """lm-eval's tokenizer keys, from the model's tokenizer when it is on this machine (never downloaded)."""
    info: dict = {"tokenizer_pad_token": None, "tokenizer_eos_token": None, "tokenizer_bos_token": None,
                  "eot_token_id": None, "max_length": (engine or {}).get("max_model_len")}
    o = (row.options or {}) if row is not None else {}
    if info["max_length"] is None:
        info["max_length"] = o.get("max_model_len") or o.get("max_length")
    source = (engine or {}).get("tokenizer") or o.get("tokenizer") or (o.get("path") if row is not None and
                                                                        row.backend == "vllm" else None)
    if not source or not Path(source).is_dir():
        return info
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(source, revision=o.get("revision"), local_files_only=True)
        info |= {"tokenizer_pad_token": [tok.pad_token, str(tok.pad_token_id)],
                 "tokenizer_eos_token": [tok.eos_token, str(tok.eos_token_id)],
                 "tokenizer_bos_token": [tok.bos_token, str(tok.bos_token_id)], "eot_token_id": tok.eos_token_id}
        if o.get("chat"):
            info["chat_template"] = tok.chat_template if isinstance(tok.chat_template, str) else None
    except Exception:  # noqa: BLE001  no tokenizer here: lm-eval leaves these keys out for such models too
        pass
    return info


def _safe_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def write_lm_eval(catalog: Catalog, lake: Lake, run_id: str, folder: Path) -> tuple[list[dict], dict]:
    """Write the run's lm-eval output into `folder` (a staging folder); returns the files' manifest entries
    (name relative to `folder`, sha256, bytes, rows: sample lines, None for results) and a summary
    {model: {"folder", "results", "samples": {task: file}}} for the manifest."""
    from eval_pipeline.harness.layout import sanitize_model_name

    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        parts = _partitions(s, run)
        models = list(dict.fromkeys([m for m in run.models if any(p.model == m for p in parts)]
                                    + sorted({p.model for p in parts})))
        rows = {m: s.get(t.Model, m) for m in models}
        for r in rows.values():
            if r is not None:
                s.expunge(r)
        engines = {}
        for part in s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)):
            if part.engine and part.model not in engines:
                engines[part.model] = dict(part.engine)
        s.expunge(run)
    timestamp = file_timestamp(run.completed_at)
    run_generation = run.generation or {}
    files: list[dict] = []
    summary: dict = {}
    used: set[str] = set()
    for model in models:
        name = sanitize_model_name(model)
        if name in used or not name:  # two names sanitise alike: the model's partition key keeps them apart
            name = f"{name}_{rows[model].key if rows[model] is not None else len(used)}"
        used.add(name)
        out_dir = folder / name
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs: list[TaskOutput] = []
        for p in sorted((p for p in parts if p.model == model), key=lambda p: p.task_name):
            path = out_dir / f"samples_{samples_task_name(p.task_name)}_{timestamp}.jsonl"
            outputs.append(_PartitionWriter(catalog, lake, run, p).write(path))
        source, model_args, extra = _model_config(rows[model], engines.get(model))
        tokenizer = _tokenizer_info(rows[model], engines.get(model))
        chat_template = tokenizer.pop("chat_template", None)
        instructions = run_generation.get("instructions")
        gen_kwargs = _gen_kwargs({}, run_generation)
        settings = run.settings or {}
        results = {
            "results": {o.name: o.entry for o in outputs},
            "group_subtasks": {},
            "configs": {o.name: o.config for o in sorted(outputs, key=lambda o: o.name)},
            "versions": {o.name: o.version for o in sorted(outputs, key=lambda o: o.name)},
            "n-shot": {o.name: None for o in sorted(outputs, key=lambda o: o.name)},
            "higher_is_better": {o.name: o.higher_is_better for o in sorted(outputs, key=lambda o: o.name)},
            "n-samples": {o.name: o.n_samples for o in outputs},
            "config": {"model": source, "model_args": model_args, **{k: v for k, v in extra.items() if v is not None},
                       "batch_size": None, "batch_sizes": [], "device": None,
                       "use_cache": run_generation.get("use_cache"), "limit": settings.get("max_samples_per_task"),
                       "bootstrap_iters": settings.get("bootstrap_iters"), "gen_kwargs": gen_kwargs,
                       "random_seed": run_generation.get("seed"), "numpy_seed": None, "torch_seed": None,
                       "fewshot_seed": None},
            "git_hash": None,
            "date": float(run.started_at or run.created_at),
            "pretty_env_info": None,
            "transformers_version": _safe_version("transformers"),
            "lm_eval_version": _safe_version("lm-eval"),
            "upper_git_hash": None,
            **tokenizer,
            "task_hashes": {o.name: o.task_hash for o in outputs},
            "model_source": source,
            "model_name": model,
            "model_name_sanitized": name,
            "system_instruction": instructions,
            "system_instruction_sha": hash_string(instructions) if instructions else None,
            "fewshot_as_multiturn": None,
            "chat_template": chat_template,
            "chat_template_sha": hash_string(chat_template) if chat_template else None,
            "total_evaluation_time_seconds": str(float((run.completed_at or run.started_at or 0)
                                                       - (run.started_at or run.completed_at or 0))),
        }
        results_path = out_dir / f"results_{timestamp}.json"
        results_path.write_text(dumps_results(results), encoding="utf-8")
        files.append(file_entry(folder, results_path, None))
        files.extend(file_entry(folder, out_dir / o.samples_file, o.lines) for o in outputs)
        summary[model] = {"folder": name, "results": f"{name}/{results_path.name}",
                          "samples": {o.name: f"{name}/{o.samples_file}" for o in outputs}}
    return files, {"timestamp": timestamp, "models": summary}


def file_entry(root: Path, path: Path, rows: int | None) -> dict:
    data = path.read_bytes()
    return {"name": path.relative_to(root).as_posix(), "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data), "rows": rows}
