"""Tasks defined by a suite manifest (MKA1's EvalSuiteManifest), turned into lm-eval style requests.

Each manifest task's dataset rows are rendered with its Jinja templates (lm-eval's doc_to_text and
doc_to_target are Jinja too) into the same inputs table an imported lm-eval task has, so generation,
grading and metrics treat both alike. Multiple choice becomes loglikelihood requests over the choices;
every other supported type generates text, graded by the metrics the manifest names (or the type's
default) after its output extraction, expressed as lm-eval filters.
"""
from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from eval_pipeline.errors import InvalidInput
from eval_pipeline.scoring.corpus import CORPUS_METRICS
from eval_pipeline.scoring.rules import NUMERIC_MATCH, _lm_eval
from eval_pipeline.suites.tasks import InputsRow

GENERATED = ("qa", "classification", "numeric", "math", "summarization", "llm_judge", "custom",
             "semantic_similarity")
UNSUPPORTED = ("transcription", "embedding")
DEFAULT_METRICS = {"numeric": ["numeric_match"], "math": ["numeric_match"], "summarization": ["bleu"],
                   "llm_judge": [], "multiple_choice": ["acc", "acc_norm"]}
PROMPT_COLUMNS = ("prompt", "question", "input", "text")
TARGET_COLUMNS = ("target", "answer", "label", "output", "reference")
NUMBER_PATTERN = r"(-?[$0-9.,]*[0-9]+(?:/[0-9]+)?)"
_env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)


@dataclass
class ManifestTask:
    """One task of a manifest, validated: its type, dataset (MKA1's EvalDataset), Jinja templates, choices,
    `output_extraction`, metric names and few-shot settings (count, strategy, seed, dataset, templates)."""

    key: str  # the manifest's task id
    type: str
    field: str  # where the task sits in the request, for errors
    dataset: dict[str, Any]
    prompt_template: str | None
    target_template: str | None
    choices: list[str] | None
    extraction: dict[str, Any] | None
    metrics: list[str]
    fewshot: dict[str, Any]
    spec: dict[str, Any] = dataclasses.field(default_factory=dict)  # the manifest entry as sent


def parse_manifest(manifest: Any, field_name: str = "manifest") -> list[ManifestTask]:
    """The tasks of MKA1's EvalSuiteManifest (`{"tasks": [...]}`), checked before any dataset is read.

    Raises InvalidInput naming the field (e.g. `manifest.tasks[2].metrics[0].id`) for anything not served."""
    if not isinstance(manifest, dict):
        raise InvalidInput(field_name, "must be an object with a tasks list")
    tasks = manifest.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise InvalidInput(f"{field_name}.tasks", "must be a non-empty list of tasks")
    out, seen = [], set()
    for i, spec in enumerate(tasks):
        f = f"{field_name}.tasks[{i}]"
        if not isinstance(spec, dict):
            raise InvalidInput(f, "must be an object")
        key = spec.get("id")
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", key):
            raise InvalidInput(f"{f}.id", "is required: 1-128 letters, digits, _ . : -")
        if key in seen:
            raise InvalidInput(f"{f}.id", f"{key!r} appears twice in the manifest")
        seen.add(key)
        kind = spec.get("type")
        if kind in UNSUPPORTED:
            raise InvalidInput(f"{f}.type", f"{kind} tasks need audio or embedding benchmarks, not served here")
        if kind not in (*GENERATED, "multiple_choice"):
            raise InvalidInput(f"{f}.type", f"must be one of {', '.join((*GENERATED, 'multiple_choice'))}")
        for python in ("grader", "preprocess", "embedding"):
            if spec.get(python) is not None:
                raise InvalidInput(f"{f}.{python}", "is not offered: the service does not run caller-supplied "
                                                    "code or embedding benchmarks; use metrics and output_extraction")
        if not isinstance(spec.get("dataset"), dict):
            raise InvalidInput(f"{f}.dataset", "is required: {source: huggingface, path, split, ...}")
        for name in ("prompt_template", "target_template"):
            if spec.get(name) is not None and not isinstance(spec[name], str):
                raise InvalidInput(f"{f}.{name}", "must be a string (a Jinja template over the row's columns)")
        choices = spec.get("choices")
        if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
            raise InvalidInput(f"{f}.choices", "must be a list of strings")
        metrics = spec.get("metrics")
        if metrics is None:
            names = DEFAULT_METRICS.get(kind, ["exact_match"])
        elif not isinstance(metrics, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str)
                                                       for m in metrics):
            raise InvalidInput(f"{f}.metrics", "must be a list of {\"id\": metric}")
        else:
            names = [m["id"] for m in metrics]
        fewshot = dict(spec.get("fewshot") or {})
        if spec.get("num_fewshot") is not None:
            fewshot.setdefault("count", spec["num_fewshot"])
        count = fewshot.get("count") or 0
        if not isinstance(count, int) or count < 0:
            raise InvalidInput(f"{f}.fewshot.count", "must be a non-negative integer")
        if fewshot.get("strategy", "first") not in ("first", "random", None):
            raise InvalidInput(f"{f}.fewshot.strategy", "must be first or random")
        task = ManifestTask(key, kind, f, spec["dataset"], spec.get("prompt_template"), spec.get("target_template"),
                            choices, spec.get("output_extraction"), names, fewshot, spec)
        _metric_list(task), _filters(task)  # checked before any dataset is read
        out.append(task)
    return out


def _filters(task: ManifestTask) -> list[dict[str, Any]]:
    """The output extraction as lm-eval filter_list entries."""
    ex = task.extraction or {"type": "none"}
    f = f"{task.field}.output_extraction"
    kind = ex.get("type", "regex" if "pattern" in ex else "none")
    if kind == "none":
        return [{"name": "none", "filter": [{"function": "take_first"}]}]
    if kind == "take_first":
        if (ex.get("lines") or 1) != 1:
            raise InvalidInput(f"{f}.lines", "only 1 (the first non-empty line) is supported")
        steps = [{"function": "regex", "regex_pattern": r"([^\n]*\S[^\n]*)", "group_select": 0}]
    elif kind in ("regex", "regex_last"):
        pattern = ex.get("pattern")
        flags = ex.get("flags") or ""
        if not isinstance(pattern, str) or not set(flags) <= set("imsx"):
            raise InvalidInput(f"{f}.pattern", "needs a regex pattern (flags from i, m, s, x)")
        if ex.get("group") not in (None, 0, 1):
            raise InvalidInput(f"{f}.group", "only the first capture group (or the whole match) is supported")
        pattern = (f"(?{flags})" if flags else "") + pattern
        try:
            re.compile(pattern)
        except re.error as e:
            raise InvalidInput(f"{f}.pattern", f"is not a valid regex: {e}") from None
        steps = [{"function": "regex", "regex_pattern": pattern, "group_select": -1 if kind == "regex_last" else 0}]
    elif kind == "label_set":
        labels = ex.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
            raise InvalidInput(f"{f}.labels", "must be a non-empty list of labels")
        alternation = "|".join(re.escape(x) for x in sorted(labels, key=len, reverse=True))
        pattern = ("" if ex.get("case_sensitive") else "(?i)") + rf"\b({alternation})\b"
        steps = [{"function": "regex", "regex_pattern": pattern, "group_select": 0}]
    elif kind == "number":
        steps = [{"function": "regex", "regex_pattern": NUMBER_PATTERN, "group_select": -1}]
    else:
        raise InvalidInput(f"{f}.type", "must be none, take_first, regex, regex_last, label_set or number")
    return [{"name": kind, "filter": steps + [{"function": "take_first"}]}]


def _metric_list(task: ManifestTask) -> list[dict[str, Any]]:
    """The task's metrics as lm-eval metric_list entries (mean, higher is better); InvalidInput for an unknown one."""
    registry = _lm_eval()
    entries = []
    for i, name in enumerate(task.metrics):
        if name not in (NUMERIC_MATCH, *CORPUS_METRICS) and name not in registry.metric_registry:
            raise InvalidInput(f"{task.field}.metrics[{i}].id", f"{name!r} is not a metric lm-eval or this "
                                                                "project grades")
        entry = {"metric": name, "aggregation": "mean", "higher_is_better": True}
        ex = task.extraction or {}
        if name == "exact_match" and ex.get("type") == "label_set" and not ex.get("case_sensitive"):
            entry["ignore_case"] = True
        entries.append(entry)
    return entries


def _render(template: str, row: dict[str, Any], field_name: str, n: int) -> str:
    try:
        return _env.from_string(template).render(**row)
    except TemplateError as e:
        raise InvalidInput(field_name, f"cannot render row {n}: {e}") from None


def _default_template(row: dict[str, Any], columns: tuple[str, ...], field_name: str) -> str:
    for c in columns:
        if c in row:
            return "{{ %s }}" % c
    raise InvalidInput(field_name, f"is required: the rows have none of the columns {', '.join(columns)}")


@dataclass
class BuiltTask:
    """A manifest task as the catalog keeps tasks: definition plus one inputs row per doc."""

    task: ManifestTask
    type: str
    request_kind: str
    metric_spec: list[dict[str, Any]]
    filter_spec: list[dict[str, Any]]
    grading: dict[str, Any]
    eval_mode: str
    gen_kwargs: dict[str, Any]
    rows: list[InputsRow]  # INPUTS_SCHEMA rows


def build_task(task: ManifestTask, rows: list[dict[str, Any]], fewshot_rows: list[dict[str, Any]] | None
               ) -> BuiltTask:
    """Render every dataset row into an inputs row: multiple choice as loglikelihood over " <choice>" with
    the gold index as target, any other type as generate_until (until blank line, greedy).

    `fewshot_rows` is the separate few-shot pool (None: the task's own rows, minus the row itself). Raises
    InvalidInput naming the template, choices or fewshot field that fails on a row."""
    if not rows:
        raise InvalidInput(f"{task.field}.dataset", "has no rows")
    prompt_t = task.prompt_template or _default_template(rows[0], PROMPT_COLUMNS, f"{task.field}.prompt_template")
    target_t = task.target_template or _default_template(rows[0], TARGET_COLUMNS, f"{task.field}.target_template")
    mc = task.type == "multiple_choice"
    gen_kwargs = {} if mc else {"until": ["\n\n"], "do_sample": False}
    shots = _fewshot(task, rows, fewshot_rows, prompt_t, target_t)
    out: list[InputsRow] = []
    for n, row in enumerate(rows):
        prompt = _render(prompt_t, row, f"{task.field}.prompt_template", n)
        prompt = shots(n) + prompt
        target = _render(target_t, row, f"{task.field}.target_template", n)
        if mc:
            choices = _choices(task, row, n)
            gold = _gold(target, choices, f"{task.field}.target_template", n)
            row_out: InputsRow = (n, "loglikelihood", prompt, [" " + c for c in choices], b"{}", orjson.dumps(gold),
                                  orjson.dumps(row, default=str), [])
        else:
            row_out = (n, "generate_until", prompt, [], orjson.dumps(gen_kwargs), orjson.dumps(target),
                       orjson.dumps(row, default=str), [])
        out.append(row_out)
    return BuiltTask(
        task=task, type="multiple_choice" if mc else "generate_until",
        request_kind="loglikelihood" if mc else "generate_until",
        metric_spec=_metric_list(task), filter_spec=[] if mc else _filters(task),
        grading={"output_type": "multiple_choice" if mc else "generate_until", "target_delimiter": " ",
                 "manifest_type": task.type},
        eval_mode="model" if task.type == "llm_judge" else "rule", gen_kwargs=gen_kwargs, rows=out)


def _choices(task: ManifestTask, row: dict[str, Any], n: int) -> list[str]:
    """Row `n`'s choices: the manifest's templates rendered, else the row's `choices` column as strings."""
    if task.choices:
        choices = [_render(c, row, f"{task.field}.choices", n) for c in task.choices]
    else:
        listed = row.get("choices")
        if not isinstance(listed, list) or not listed:
            raise InvalidInput(f"{task.field}.choices", f"is required: row {n} has no choices column")
        choices = [str(c) for c in listed]
    if len(choices) < 2:
        raise InvalidInput(f"{task.field}.choices", f"row {n} has fewer than 2 choices")
    return choices


def _gold(target: str, choices: list[str], field_name: str, n: int) -> int:
    """The gold choice's index: the target is a choice's text or its index; else InvalidInput."""
    text = target.strip()
    if text in choices:
        return choices.index(text)
    if text.isdigit() and int(text) < len(choices):
        return int(text)
    raise InvalidInput(field_name, f"row {n}: target {text!r} is neither a choice nor a choice index")


def _fewshot(task: ManifestTask, rows: list[dict[str, Any]], fewshot_rows: list[dict[str, Any]] | None,
             prompt_t: str, target_t: str) -> Callable[[int], str]:
    """A function of the row number giving the few-shot prefix (examples, then the separator)."""
    cfg = task.fewshot
    count = cfg.get("count") or 0
    if not count:
        return lambda n: ""
    pool = fewshot_rows if fewshot_rows is not None else rows
    same = fewshot_rows is None
    if len(pool) - same < count:
        raise InvalidInput(f"{task.field}.fewshot.count", f"asks for {count} examples; the pool has {len(pool)}")
    ex_prompt = cfg.get("prompt_template") or prompt_t
    ex_target = cfg.get("target_template") or target_t
    example_t = cfg.get("example_template") or "{{prompt}}\n{{target}}"
    sep: str = cfg["separator"] if cfg.get("separator") is not None else "\n\n"
    f = f"{task.field}.fewshot"
    rendered = [_render(example_t, {"prompt": _render(ex_prompt, r, f"{f}.prompt_template", i),
                                    "target": _render(ex_target, r, f"{f}.target_template", i)},
                        f"{f}.example_template", i) for i, r in enumerate(pool)]
    rng = random.Random(cfg.get("seed") or 0)

    def prefix(n: int) -> str:
        candidates = [i for i in range(len(pool)) if not (same and i == n)]
        chosen = candidates[:count] if cfg.get("strategy", "first") in ("first", None) else \
            sorted(rng.sample(candidates, count))
        return sep.join(rendered[i] for i in chosen) + sep

    return prefix
