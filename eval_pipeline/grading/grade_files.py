"""The grade files of a (model, task) partition in the lake: one Parquet file per grader (rules, a judge
and rubric, an embedding model, people), their schema, and the scores a run's current graders give."""
from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any, Sequence

import pyarrow as pa

from eval_pipeline.scoring.lm_eval_code import GradeRow
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake

GRADES_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("task_id", pa.string()), ("doc_id", pa.int64()),
    ("filter", pa.string()), ("metric", pa.string()), ("score", pa.float64()), ("grader", pa.string()),
    ("error", pa.string()), ("stats", pa.list_(pa.float64())), ("rationale", pa.string()),
    ("rubric_sha256", pa.string()),
])

def grades_dir(run_id: str, model_key: str, task_key: str) -> str:
    """The lake folder (relative to its root) of one partition's grade files."""
    return f"grades/{run_id}/{model_key}/{task_key}"


def grades_path(run_id: str, model_key: str, task_key: str, grader: str = "rules") -> str:
    """One file per grader: rules, judge-<hash of judge and rubric>, embedding-<hash>, human."""
    return f"{grades_dir(run_id, model_key, task_key)}/{grader}.parquet"


def active_grade_files(lake: Lake, run: t.Run, model_key: str, task_key: str) -> list[str]:
    """The grade files that count for the run now: rules, its current judge and rubric, its embedding
    model, human grades (earlier judges' files stay beside them, unused)."""
    names = ["rules"]
    if run.judge_model:
        names.append(judge_grader(run.judge_model, rubric_text(run.settings)))
    if run.embedding_model:
        names.append(embedding_grader(run.embedding_model))
    names.append("human")
    return [p for p in (grades_path(run.id, model_key, task_key, n) for n in names) if lake.exists(p)]


def doc_scores(lake: Lake, run: t.Run, model_key: str, task_key: str) -> dict[int, dict[str, float]]:
    """doc -> {"metric,filter": score} from the run's current graders (graded samples only)."""
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for path in active_grade_files(lake, run, model_key, task_key):
        for g in lake.read_table(path, columns=["doc_id", "metric", "filter", "score", "error"]).to_pylist():
            if g["error"] is None and g["score"] is not None:
                out[g["doc_id"]][f"{g['metric']},{g['filter']}"] = g["score"]
    return out


def grades_table(run_id: str, model: str, task_id: str, rows: Sequence[GradeRow],
                 rationale: Sequence[str | None] | None = None, rubric_sha256: Sequence[str] | None = None
                 ) -> pa.Table:
    """The grades of one partition as a table of GRADES_SCHEMA. rows: (doc_id, filter, metric, score,
    grader, error, stats); judges add a rationale and rubric hash per row (lists as long as `rows`)."""
    n = len(rows)
    columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in range(7)]
    return pa.table([[run_id] * n, [model] * n, [task_id] * n, *columns, rationale or [None] * n,
                     rubric_sha256 or [None] * n], schema=GRADES_SCHEMA)

DEFAULT_RUBRIC = """You are grading an answer to a task against its reference answer.

Task:
{question}

Reference answer:
{reference}

Answer to grade:
{prediction}

Score the answer from 0 (wrong or unrelated) to 10 (fully correct and equivalent to the reference).
Reply with JSON only: {"score": <integer 0-10>, "rationale": "<one sentence>"}
"""


def rubric_text(settings: dict[str, Any]) -> str:
    """The judge rubric of a run's settings: its `judge_rubric`, else DEFAULT_RUBRIC."""
    return settings.get("judge_rubric") or DEFAULT_RUBRIC


def rubric_sha256(text: str) -> str:
    """The hex sha256 of the rubric's UTF-8 text, recorded with every judge grade."""
    return hashlib.sha256(text.encode()).hexdigest()


def judge_grader(judge_model: str, rubric: str) -> str:
    """The grades file's name for this judge and rubric."""
    return "judge-" + hashlib.sha256(f"{judge_model}\n{rubric_sha256(rubric)}".encode()).hexdigest()[:16]

def embedding_grader(embedding_model: str) -> str:
    """The grades file's name for this embedding model: "embedding-" and 16 hex digits of its sha256."""
    return "embedding-" + hashlib.sha256(embedding_model.encode()).hexdigest()[:16]

