"""Write lm-eval 0.4.x-format results and samples of the project's own making (demo, tests, benchmark).

Prompts depend only on the task and doc id, so every model sees the same inputs; answers depend on the
seed. Aggregates are computed from the samples the way lm-eval does (mean, sample stderr).
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from eval_pipeline.harness.layout import sanitize_model_name


@dataclass(frozen=True)
class SyntheticTask:
    """A task of generated results: its lm-eval name, request kind and number of docs."""

    name: str
    kind: str  # "multiple_choice" or "generate_until"
    n_docs: int
    skill: float = 0.6  # chance that a model answers a doc correctly


def _sha(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _mean_stderr(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mu = sum(values) / n
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1) / n)


def _mc_sample(task: SyntheticTask, doc_id: int, rng: random.Random) -> dict:
    a, b = doc_id % 17 + 2, doc_id % 11 + 3
    choices = [str(a + b + d) for d in (0, 1, -1, 2)]
    answer = doc_id % 4
    choices[0], choices[answer] = choices[answer], choices[0]
    doc = {"question": f"[{task.name}] What is {a} + {b}?", "choices": choices, "answer": answer}
    context = f"Question: {doc['question']}\nAnswer:"
    correct = rng.random() < task.skill
    lps = [-rng.uniform(2.0, 4.0) for _ in choices]
    best = answer if correct else (answer + 1 + rng.randrange(3)) % 4
    lps[best] = max(lps) + rng.uniform(0.01, 0.4)  # a small margin, so length normalisation can flip it
    norm = [lp / len(" " + c) for lp, c in zip(lps, choices)]
    pair = [[f"{lp}", "False"] for lp in lps]
    return {
        "doc_id": doc_id, "doc": doc, "target": str(answer),
        "arguments": {f"gen_args_{i}": {"arg_0": context, "arg_1": f" {c}"} for i, c in enumerate(choices)},
        "resps": [[p] for p in pair], "filtered_resps": pair, "filter": "none", "metrics": ["acc", "acc_norm"],
        "doc_hash": _sha(doc), "prompt_hash": _sha(context), "target_hash": _sha(str(answer)),
        "acc": 1.0 if best == answer else 0.0, "acc_norm": 1.0 if norm.index(max(norm)) == answer else 0.0,
    }


def _gen_sample(task: SyntheticTask, doc_id: int, rng: random.Random) -> dict:
    a, b = doc_id % 23 + 1, doc_id % 7 + 2
    answer = str(a * b)
    doc = {"question": f"[{task.name}] Compute {a} * {b}.", "answer": answer}
    prompt = f"Q: {doc['question']}\nA:"
    pred = answer if rng.random() < task.skill else str(a * b + 1 + rng.randrange(5))
    gen_kwargs = {"until": ["\n\n", "Q:"], "max_gen_toks": 32, "do_sample": False, "temperature": 0.0}
    return {
        "doc_id": doc_id, "doc": doc, "target": answer,
        "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": gen_kwargs}},
        "resps": [[f" {pred}\n"]], "filtered_resps": [pred], "filter": "strict-match",
        "metrics": ["exact_match"], "doc_hash": _sha(doc), "prompt_hash": _sha(prompt),
        "target_hash": _sha(answer), "exact_match": 1.0 if pred == answer else 0.0,
    }


def _config(task: SyntheticTask) -> dict:
    metrics = ["acc", "acc_norm"] if task.kind == "multiple_choice" else ["exact_match"]
    cfg = {"task": task.name, "output_type": task.kind, "num_fewshot": 0, "repeats": 1,
           "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in metrics],
           "metadata": {"version": 1.0}}
    if task.kind == "generate_until":
        cfg["generation_kwargs"] = {"until": ["\n\n", "Q:"], "max_gen_toks": 32, "do_sample": False,
                                    "temperature": 0.0}
        cfg["filter_list"] = [{"name": "strict-match", "filter": [{"function": "take_first"}]}]
    return cfg


def write_run(folder: Path, model: str, tasks: list[SyntheticTask], seed: int,
              timestamp: str = "2026-01-02T03-04-05.123456") -> Path:
    """Write `<folder>/<model sanitized>/results_<ts>.json` and one samples file per task."""
    out = Path(folder) / sanitize_model_name(model)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{model}:{seed}")
    results, n_samples = {}, {}
    for task in tasks:
        make = _mc_sample if task.kind == "multiple_choice" else _gen_sample
        per_metric: dict[tuple[str, str], list[float]] = {}
        with open(out / f"samples_{task.name}_{timestamp}.jsonl", "w") as f:
            for doc_id in range(task.n_docs):
                sample = make(task, doc_id, rng)
                for m in sample["metrics"]:
                    per_metric.setdefault((m, sample["filter"]), []).append(sample[m])
                f.write(json.dumps(sample) + "\n")
        entry = {"alias": task.name}
        for (m, filt), values in per_metric.items():
            entry[f"{m},{filt}"] = sum(values) / len(values)
            entry[f"{m}_stderr,{filt}"] = _mean_stderr(values)
        results[task.name] = entry
        n_samples[task.name] = {"original": task.n_docs, "effective": task.n_docs}
    doc = {
        "results": results, "group_subtasks": {t.name: [] for t in tasks},
        "configs": {t.name: _config(t) for t in tasks}, "versions": {t.name: 1.0 for t in tasks},
        "n-shot": {t.name: 0 for t in tasks},
        "higher_is_better": {t.name: {m["metric"]: True for m in _config(t)["metric_list"]} for t in tasks},
        "n-samples": n_samples,
        "config": {"model": "vllm", "model_args": {"pretrained": model, "dtype": "bfloat16"},
                   "batch_size": "auto", "limit": None, "bootstrap_iters": 100000, "gen_kwargs": None,
                   "random_seed": seed},
        "git_hash": "0a1b2c3", "date": 1767322800.0 + seed, "lm_eval_version": "0.4.13",
        "model_source": "vllm", "model_name": model, "model_name_sanitized": sanitize_model_name(model),
        "total_evaluation_time_seconds": "12.5",
    }
    path = out / f"results_{timestamp}.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


DEMO_TASKS = [
    SyntheticTask("arith_add_mc", "multiple_choice", 40, skill=0.55),
    SyntheticTask("arith_mul_gen", "generate_until", 30, skill=0.4),
    SyntheticTask("arith_add_mc_hard", "multiple_choice", 25, skill=0.35),
]
DEMO_MODELS = ["demo-org/tiny-base", "demo-org/tiny-chat"]


def write_demo(folder: Path) -> list[Path]:
    """The demo's results: one run per demo model on the demo tasks, in `folder`; the results files."""
    return [write_run(folder, m, DEMO_TASKS, seed=i, timestamp=f"2026-01-0{i + 1}T10-00-00.000001")
            for i, m in enumerate(DEMO_MODELS)]
