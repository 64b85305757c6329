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

This module writes the whole run (a results file per model, `write_lm_eval`); lm_eval_samples.py writes each
task's samples file and results entry, lm_eval_format.py holds lm-eval's dumping, hashing and naming rules.
"""
from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from eval_pipeline.exports.lm_eval_format import (
    _gen_kwargs,
    dumps_results,
    file_timestamp,
    hash_string,
    samples_task_name,
)
from eval_pipeline.exports.lm_eval_samples import TaskOutput, _Partition, _PartitionWriter
from eval_pipeline.harness.layout import sanitize_model_name
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake

# --- the whole run -------------------------------------------------------------------------------------

def _partitions(s: Session, run: t.Run) -> list[_Partition]:
    """The run's (model, task) partitions with their tasks (detached from `s`), input paths and chunks."""
    parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run.id)).all()
    out = []
    for part in parts:
        task = s.get(t.Task, part.task_id)
        assert task is not None  # a partition's task_id is a foreign key of tasks
        tv = s.get(t.TaskVersion, (part.task_id, part.task_version))
        inputs_path = s.scalar(select(t.File.path).where(t.File.id == tv.inputs_file_id)) if tv and \
            tv.inputs_file_id else None
        s.expunge(task)
        out.append(_Partition(part.model, part.task_id, task.name, task, part.model_key, part.task_key, inputs_path,
                              tv.n_docs if tv else 0, [c["path"] for c in part.chunks or []],
                              _gradability(part.grading)))
    return out


def _gradability(grading: dict[str, Any] | None) -> dict[str, Any] | None:
    """A partition's {status, reason}, without the grading settings recorded beside them for staleness."""
    return {k: v for k, v in grading.items() if k in ("status", "reason")} if grading else None


def _model_config(row: t.Model | None, engine: dict[str, Any] | None) -> tuple[str | None, dict[str, Any],
                                                                               dict[str, Any]]:
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


def _tokenizer_info(row: t.Model | None, engine: dict[str, Any] | None) -> dict[str, Any]:
    """lm-eval's tokenizer keys, from the model's tokenizer when it is on this machine (never downloaded)."""
    info: dict[str, Any] = {"tokenizer_pad_token": None, "tokenizer_eos_token": None, "tokenizer_bos_token": None,
                  "eot_token_id": None, "max_length": (engine or {}).get("max_model_len")}
    o = (row.options or {}) if row is not None else {}
    if info["max_length"] is None:
        info["max_length"] = o.get("max_model_len") or o.get("max_length")
    source = (engine or {}).get("tokenizer") or o.get("tokenizer") or (o.get("path") if row is not None and
                                                                        row.backend == "vllm" else None)
    if not source or not Path(source).is_dir():
        return info
    try:
        from transformers import AutoTokenizer  # deferred: transformers takes seconds to import

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
    """The installed version of `package`, None when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def write_lm_eval(catalog: Catalog, lake: Lake, run_id: str, folder: Path) -> tuple[list[dict[str, Any]],
                                                                                   dict[str, Any]]:
    """Write the run's lm-eval output into `folder` (a staging folder); returns the files' manifest entries
    (name relative to `folder`, sha256, bytes, rows: sample lines, None for results) and a summary
    {"timestamp": <ts>, "models": {model: {"folder", "results", "samples": {task: file}}}} for the manifest.
    lm_eval/loggers/evaluation_tracker.py `save_results_aggregated` and `save_results_samples`."""
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        assert run is not None  # an export's run_id is a foreign key of eval_runs (deleted with its run)
        parts = _partitions(s, run)
        models = list(dict.fromkeys([m for m in run.models if any(p.model == m for p in parts)]
                                    + sorted({p.model for p in parts})))
        rows = {m: s.get(t.Model, m) for m in models}
        for r in rows.values():
            if r is not None:
                s.expunge(r)
        engines: dict[str, dict[str, Any]] = {}
        for part in s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)):
            if part.engine and part.model not in engines:
                engines[part.model] = dict(part.engine)
        s.expunge(run)
    timestamp = file_timestamp(run.completed_at)
    run_generation = run.generation or {}
    files: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    used: set[str] = set()
    for model in models:
        name = sanitize_model_name(model)
        if name in used or not name:  # two names sanitise alike: the model's partition key keeps them apart
            row = rows[model]
            name = f"{name}_{row.key if row is not None else len(used)}"
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
        results: dict[str, Any] = {
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


def file_entry(root: Path, path: Path, rows: int | None) -> dict[str, Any]:
    """A manifest entry of the file at `path`: {"name" (relative to `root`, with '/'), "sha256" (hex), "bytes",
    "rows" (sample lines; None for a results file)}."""
    data = path.read_bytes()
    return {"name": path.relative_to(root).as_posix(), "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data), "rows": rows}
