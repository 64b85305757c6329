"""Parse an lm-eval results JSON (any vintage) into models, tasks and metrics."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

# More copies of each request than any lm-eval task asks for (gsm8k_cot_self_consistency: 64) is a mistake.
MAX_REPEATS = 1024
# Entries of results[task] that are not metrics.
NON_METRIC_KEYS = {"alias", "name", "sample_len", "sample_count", "samples"}
# Metrics whose lm-eval aggregation is the mean of per-sample values, for files that carry no configs.
MEAN_METRICS = {"acc", "acc_norm", "acc_bytes", "acc_mutual_info", "exact_match", "em", "brier_score"}
LOGLIKELIHOOD_METRICS = {"acc", "acc_norm", "acc_bytes", "acc_mutual_info", "ppl", "perplexity",
                         "word_perplexity", "byte_perplexity", "bits_per_byte", "brier_score"}


@dataclass
class MetricValue:
    """One `metric,filter` value of a task and its stderr (None: missing, "N/A" or not finite)."""

    metric: str
    filter: str
    value: float | None
    stderr: float | None


@dataclass
class TaskResult:
    """One task (or group) entry of a results file, with its `configs` entry, version, effective sample count
    (`n-samples`) and `higher_is_better` mapping {metric: bool}."""

    name: str
    is_group: bool
    metrics: list[MetricValue]
    config: dict[str, Any] = field(default_factory=dict)
    version: Any = None
    n_samples: int | None = None
    higher_is_better: dict[str, Any] = field(default_factory=dict)

    @property
    def output_type(self) -> str | None:
        """lm-eval's output_type from the task config, or None when the file kept no config."""
        return self.config.get("output_type")

    @property
    def request_kind(self) -> str:
        """generate_until, loglikelihood_rolling, or loglikelihood (multiple_choice and any other output_type);
        without a config, loglikelihood when every metric is one of loglikelihood's (acc, ppl...), else
        generate_until."""
        if self.output_type:
            return (self.output_type if self.output_type in ("generate_until", "loglikelihood_rolling")
                    else "loglikelihood")
        names = {m.metric for m in self.metrics}
        return "loglikelihood" if names and names <= LOGLIKELIHOOD_METRICS else "generate_until"

    def mean_metrics(self) -> set[str]:
        """Metric names whose aggregate is the mean of the per-sample values."""
        spec = self.config.get("metric_list")
        if isinstance(spec, list) and spec:
            return {m["metric"] for m in spec if isinstance(m, dict) and m.get("aggregation") == "mean"}
        return {m.metric for m in self.metrics} & MEAN_METRICS


@dataclass
class ParsedResults:
    """A parsed results file: the model (name and model_args as written: a dict or a "k=v,..." string), the
    harness version, git hash, evaluation date (Unix seconds), file timestamp, top-level config, and its tasks."""

    model: str
    model_args: Any
    harness_version: str | None
    git_hash: str | None
    evaluated_at: float | None
    timestamp: str | None  # the `<ts>` of results_<ts>.json, used to pair samples files
    config: dict[str, Any]
    tasks: list[TaskResult]

    @property
    def leaf_tasks(self) -> list[TaskResult]:
        """The tasks that are not groups."""
        return [t for t in self.tasks if not t.is_group]


TIMESTAMP = re.compile(r"_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.json$")


def file_timestamp(path: str) -> str | None:
    """The `<ts>` of a `..._<YYYY-MM-DDTHH-MM-SS[.ffffff]>.json` path, or None."""
    m = TIMESTAMP.search(path)
    return m.group(1) if m else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    return None  # "N/A" and anything else non-numeric is missing, not zero


def _metrics_of(entry: dict[str, Any]) -> list[MetricValue]:
    values: dict[tuple[str, str], float | None] = {}
    stderrs: dict[tuple[str, str], float | None] = {}
    for key, raw in entry.items():
        if key in NON_METRIC_KEYS:
            continue
        name, _, filt = key.partition(",")
        filt = filt or "none"
        if name.endswith("_stderr"):
            stderrs[(name.removesuffix("_stderr"), filt)] = _number(raw)
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool) or raw == "N/A":
            values[(name, filt)] = _number(raw)
    return [MetricValue(m, f, v, stderrs.get((m, f))) for (m, f), v in values.items()]


def _model_from_args(model_args: Any) -> str | None:
    if isinstance(model_args, dict):
        return model_args.get("pretrained") or model_args.get("model") or model_args.get("path")
    if isinstance(model_args, str):
        parts = dict(p.split("=", 1) for p in model_args.split(",") if "=" in p)
        return parts.get("pretrained") or parts.get("model") or parts.get("path")
    return None


def _group_names(doc: dict[str, Any]) -> set[str]:
    groups = set((doc.get("groups") or {}).keys())
    groups |= {g for g, subs in (doc.get("group_subtasks") or {}).items() if subs}
    return groups


def _is_metric_key(key: str) -> bool:
    name, comma, filt = key.partition(",")
    return bool(comma and name.strip() and filt.strip())


def _is_metric_value(value: Any) -> bool:
    return value is None or value == "N/A" or isinstance(value, (int, float)) and not isinstance(value, bool)


def results_mapping_problem(doc: Any) -> str | None:
    """Why `doc` is not a bare results mapping (lm-eval's `results` object kept in a file of its own), or None.

    A results mapping is a non-empty JSON object whose every value is an object (a task or group entry)
    in which every key is either a `"metric,filter"` key (text on both sides of the first comma) whose
    value is a number, "N/A" or null, or one of lm-eval's descriptive keys (NON_METRIC_KEYS and the
    " " placeholder of a group that aggregates nothing); at least one metric value is a number.
    """
    if not isinstance(doc, dict) or not doc:
        return "not a non-empty JSON object"
    numeric = False
    for name, entry in doc.items():
        if not isinstance(entry, dict):
            return f"entry {name!r} is not an object"
        for key, value in entry.items():
            if key in NON_METRIC_KEYS or key == " ":
                continue
            if not _is_metric_key(key):
                return f"entry {name!r} has {key!r}, not a 'metric,filter' key"
            if not _is_metric_value(value):
                return f"{name!r}[{key!r}] is not a number or 'N/A'"
            # a stderr alone, or NaN/Infinity, is not a value of the task's
            numeric = numeric or (isinstance(value, (int, float)) and math.isfinite(value)
                                  and "_stderr," not in key)
    return None if numeric else "no 'metric,filter' key with a number"


def is_results_document(doc: Any) -> bool:
    """Whether `doc` is worth parsing as results: a `results` object, or a bare results mapping."""
    return isinstance(doc, dict) and (isinstance(doc.get("results"), dict) or results_mapping_problem(doc) is None)


_INDENT = re.compile(r"^( *)- ")


def _alias_depth(entry: dict[str, Any]) -> int:
    """lm-eval indents a subtask's alias as `" " * depth + "- "` below its group."""
    alias = entry.get("alias")
    m = _INDENT.match(alias) if isinstance(alias, str) else None
    return len(m.group(1)) if m else 0


def _mapping_groups(results: dict[str, Any]) -> set[str]:
    """Groups of a mapping that has no `groups`/`group_subtasks` beside it: an entry with no metric (a
    group that aggregates nothing: alias/name/sample_len, or the " " placeholder), with `sample_count`
    (lm-eval counts samples per metric for group aggregates only), or whose next entry's alias is indented
    deeper (its first subtask, in the order lm-eval writes results)."""
    names = list(results)
    groups = set()
    for i, name in enumerate(names):
        entry = results[name]
        deeper = i + 1 < len(names) and _alias_depth(results[names[i + 1]]) > _alias_depth(entry)
        if "sample_count" in entry or deeper or not any(_is_metric_key(k) for k in entry):
            groups.add(name)
    return groups


def parse_results(doc: Any, path: str) -> ParsedResults:
    """Parse a decoded results file found at `path` (the path gives the timestamp and, failing all else, the
    model: its folder). Raise ValueError with the reason when `doc` is not an lm-eval results document.

    A bare results mapping (see results_mapping_problem) is a results file of unknown vintage: no config,
    the model from the folder, harness version None.
    """
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    results = doc.get("results")
    mapping = False
    if not isinstance(results, dict):
        problem = results_mapping_problem(doc)
        if problem is not None:
            raise ValueError(f"no 'results' object with at least one task, nor a bare results mapping ({problem})")
        results, mapping = doc, True
        doc = {}
    if not results:
        raise ValueError("no 'results' object with at least one task")
    for key in ("config", "configs", "versions", "n-samples", "higher_is_better", "groups", "group_subtasks"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise ValueError(f"'{key}' is not an object")
    for name, cfg in (doc.get("configs") or {}).items():
        if cfg is not None and not isinstance(cfg, dict):
            raise ValueError(f"configs[{name!r}] is not an object")
        repeats = (cfg or {}).get("repeats")
        if repeats is not None and not (isinstance(repeats, int) and not isinstance(repeats, bool)
                                        and 1 <= repeats <= MAX_REPEATS):
            raise ValueError(f"configs[{name!r}].repeats is {repeats!r}: lm-eval's repeats is a whole number "
                             f"from 1 (at most {MAX_REPEATS} here)")
    for key in ("higher_is_better", "n-samples"):
        for name, value in (doc.get(key) or {}).items():
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{key}[{name!r}] is not an object")
    config = doc.get("config") or {}
    configs = doc.get("configs") or {}
    versions = doc.get("versions") or {}
    n_samples = doc.get("n-samples") or {}
    hib = doc.get("higher_is_better") or {}
    groups = _mapping_groups(results) if mapping else _group_names(doc)

    tasks = []
    for name, entry in results.items():
        if not isinstance(entry, dict):
            raise ValueError(f"results[{name!r}] is not an object")
        counts = n_samples.get(name) or {}
        tasks.append(TaskResult(
            name=name,
            is_group=name in groups,
            metrics=_metrics_of(entry),
            config=configs.get(name) or {},
            version=versions.get(name),
            n_samples=counts.get("effective") if isinstance(counts, dict) else None,
            higher_is_better=hib.get(name) or {},
        ))
    for name, entry in (doc.get("groups") or {}).items():
        if name not in results and isinstance(entry, dict):
            tasks.append(TaskResult(name=name, is_group=True, metrics=_metrics_of(entry)))

    model_args = config.get("model_args")
    folder = path.rsplit("/", 2)[-2] if path.count("/") >= 1 else None
    model = (doc.get("model_name") or _model_from_args(model_args) or config.get("model")
             or folder or "unknown")
    harness = doc.get("lm_eval_version")
    if not harness and not mapping:
        harness = "0.4.x" if any("," in k for e in results.values() for k in e) else "0.3.x"
    date = doc.get("date")
    git_hash = doc.get("git_hash")
    return ParsedResults(
        model=str(model),
        model_args=model_args,
        harness_version=harness,
        git_hash=str(git_hash) if git_hash else None,
        evaluated_at=float(date) if isinstance(date, (int, float)) else None,
        timestamp=file_timestamp(path),
        config=config,
        tasks=tasks,
    )
