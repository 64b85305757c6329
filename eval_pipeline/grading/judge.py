"""Judge grading: a judge model reads each generated answer with the task's prompt and reference and
returns a verdict {"score": 0-10, "rationale": "..."} under a rubric prompt.

The judge goes through the generation backends (vLLM offline, or any OpenAI-compatible endpoint) with
`grader_concurrency` requests in flight; vLLM constrains decoding to the verdict's JSON schema and chat
endpoints get it as `response_format`. Every grade records the sha256 of the rubric text; the grades
file is named by judge and rubric, so a new judge or rubric makes new grades beside the old ones and
never regenerates. A verdict that does not parse is a grade with an error, not a crash."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import cast

from eval_pipeline.generation.backends import backend_for
from eval_pipeline.generation.requests import GenRequest
from eval_pipeline.grading.generated_docs import generation_docs
from eval_pipeline.grading.grade_files import grades_path, grades_table, judge_grader, rubric_sha256, rubric_text
from eval_pipeline.models.registry import resolve_model
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake

METRIC = "judge_score"


PLACEHOLDERS = ("{question}", "{reference}", "{prediction}")


VERDICT_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["score", "rationale"],
                  "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10},
                                 "rationale": {"type": "string", "maxLength": 120}}}


# The same verdict as a regular expression for vLLM's constrained decoding: a JSON schema leaves
# whitespace free, and a weak judge pads the object with it until it runs out of tokens.
VERDICT_REGEX = r'\{"score": (10|[0-9]), "rationale": "[^"\\\n]{1,120}"\}'


MAX_VERDICT_TOKENS = 160


def judges(task: t.Task) -> bool:
    """Whether a judge model grades the task (its eval_mode includes model)."""
    return "model" in (task.eval_mode or "").split(",")


def render(rubric: str, question: str, reference: str, prediction: str) -> str:
    """The judge's prompt: the rubric with {question}, {reference} and {prediction} replaced by the texts."""
    # Plain replacement: the texts and the rubric's own JSON example may hold braces of their own.
    out = rubric
    for key, value in zip(PLACEHOLDERS, (question, reference, prediction)):
        out = out.replace(key, value)
    return out


class UnparseableVerdict(ValueError):
    """The judge's reply holds no valid verdict; its grade records this as its error."""


_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_verdict(text: str) -> tuple[float, str]:
    """(score in [0, 1], rationale) from the judge's reply: the JSON object in it, score 0-10."""
    match = _OBJECT.search(text or "")
    if not match:
        raise UnparseableVerdict(f"no JSON object in the verdict: {text[:200]!r}")
    try:
        verdict = json.loads(match.group(0))
    except json.JSONDecodeError as e:
        raise UnparseableVerdict(f"verdict is not valid JSON ({e.msg}): {match.group(0)[:200]!r}") from None
    score = verdict.get("score") if isinstance(verdict, dict) else None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
            or not 0 <= score <= 10:
        raise UnparseableVerdict(f"verdict score must be a number from 0 to 10, got {score!r}")
    rationale = verdict.get("rationale")
    if not isinstance(rationale, str):
        raise UnparseableVerdict("verdict has no rationale string")
    return float(score) / 10.0, rationale


@dataclass
class JudgeReport:
    """What judging a partition did: the grades file's lake path, the docs judged and failed (judge request
    failed, unparseable verdict, failed generation), and whether this judge and rubric had graded it already
    (`skipped`: nothing was sent)."""

    path: str
    judged: int
    failed: int
    skipped: bool


def judge_partition(catalog: Catalog, lake: Lake, run_id: str, model: str, task_id: str) -> JudgeReport | None:
    """Judge grades of one partition (scores 0-1, the verdict's 0-10 over 10) with the run's judge model and
    rubric, `grader_concurrency` requests in flight; None when the run has no judge or the task is not judged.
    Raises InvalidInput (judge_model) when the judge model no longer resolves."""
    with catalog.session() as s:
        run, task = s.get(t.Run, run_id), s.get(t.Task, task_id)
        part = s.get(t.RunPartition, (run_id, model, task_id))
        assert run is not None  # the run of a partition being graded
        if not run.judge_model or not judges(cast(t.Task, task)):  # the partition's task (foreign key)
            return None
        assert part is not None
        judge_name, settings = run.judge_model, dict(run.settings)
        keys = (part.model_key, part.task_key)
    rubric = rubric_text(settings)
    path = grades_path(run_id, *keys, grader=judge_grader(judge_name, rubric))
    if lake.exists(path):  # this judge and rubric graded these (immutable) generations already
        return JudgeReport(path, 0, 0, True)
    docs = generation_docs(catalog, lake, run_id, model, task_id)
    params = {"until": [], "max_gen_toks": MAX_VERDICT_TOKENS, "temperature": 0.0, "json_schema": VERDICT_SCHEMA,
              "json_regex": VERDICT_REGEX}
    requests: list[GenRequest] = []
    pending: list[int] = []
    for i, d in enumerate(docs):
        if d.error is None and d.kind != "loglikelihood":
            requests.append(GenRequest(len(requests), d.doc_id, "generate_until",
                                       render(rubric, d.prompt, d.reference, d.prediction or ""), None, params))
            pending.append(i)
    backend = backend_for(resolve_model(catalog, judge_name, "judge_model")).backend
    outcomes = backend.generate(requests, {}, {"generation_concurrency": settings.get("grader_concurrency") or 1})
    verdicts: dict[int, tuple[float | None, str | None, str | None]] = {}  # (score, rationale, error)
    score: float | None  # as unpacked from a verdict and, in the second loop, from `verdicts`
    rationale: str | None
    for i, outcome in zip(pending, outcomes):
        if outcome.error:
            verdicts[i] = (None, None, f"judge request failed: {outcome.error}")
            continue
        try:
            # a generate_until outcome without an error has its text (both backends give a str)
            score, rationale = parse_verdict(cast(str, outcome.output_text))
            verdicts[i] = (score, rationale, None)
        except UnparseableVerdict as e:
            verdicts[i] = (None, outcome.output_text, f"unparseable verdict: {e}")
    rows, rationales = [], []
    for i, d in enumerate(docs):
        if d.kind == "loglikelihood":
            continue
        score, rationale, error = verdicts.get(i, (None, None, d.error))
        rows.append((d.doc_id, "none", METRIC, score, f"judge:{judge_name}", error, None))
        rationales.append(rationale)
    lake.write_table(path, grades_table(run_id, model, task_id, rows, rationale=rationales,
                                        rubric_sha256=[rubric_sha256(rubric)] * len(rows)))
    return JudgeReport(path, sum(1 for r in rows if r[5] is None), sum(1 for r in rows if r[5] is not None), False)

