"""Planning an import: which listed files are lm-eval results files (size, JSON, shape), the samples
files of each, and the fingerprint that tells a run already imported from a new one."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from eval_pipeline.errors import NotFound
from eval_pipeline.harness.jsonio import loads
from eval_pipeline.harness.layout import classify, pair_samples
from eval_pipeline.harness.results import ParsedResults, TaskResult, is_results_document, parse_results
from eval_pipeline.historical.request import (
    DEFAULT_LISTING_LIMIT,
    ImportResult,
)
from eval_pipeline.stores.sources import ListedFile, Source
from eval_pipeline.suites.tasks import TaskSpec, task_spec

MAX_RESULTS_BYTES = 64 << 20  # results files are kilobytes; a larger JSON is some other data file


@dataclass
class PlannedRun:
    """One results file to import: its parsed results, its samples files by task, the fingerprint of all
    of them (the source's content ids), and the catalog spec of each task it has."""

    results: ListedFile
    parsed: ParsedResults
    samples: dict[str, list[ListedFile]]
    fingerprint: str
    specs: dict[str, TaskSpec] = field(default_factory=dict)

    @property
    def lake_key(self) -> str:
        """32 hex characters naming this run's files in the lake (same path and content, same key)."""
        return hashlib.sha256(f"{self.results.path}\n{self.fingerprint}".encode()).hexdigest()[:32]


def _read_json(source: Source, f: ListedFile) -> Any:
    with source.open(f) as stream:
        return loads(stream.read())


def _candidates(source: Source, listing: list[ListedFile], explicit: list[str], limit: int | None
                ) -> tuple[list[ListedFile], set[str], int | None]:
    """(files to try as results, those that must be results, the limit that applies)."""
    by_path = {f.path: f for f in listing}
    if explicit:
        missing = [p for p in explicit if p not in by_path]
        if missing:
            raise NotFound("file", ", ".join(missing), f"at revision {source.revision or 'current'}")
        return [by_path[p] for p in dict.fromkeys(explicit)], set(explicit), limit
    named, maybe = classify(listing)
    return sorted(named + maybe, key=lambda f: f.path), {f.path for f in named}, limit or DEFAULT_LISTING_LIMIT


def _parse_candidate(source: Source, f: ListedFile, must_be_results: bool,
                     result: ImportResult) -> ParsedResults | None:
    """The parsed results file; None (with an error when it had to be results) for anything else."""
    def reject(reason: str) -> None:
        if must_be_results:
            result.discovered_files += 1
            result.errors.append({"path": f.path, "reason": reason})

    if (f.size or 0) > MAX_RESULTS_BYTES:
        reject(f"{f.size} bytes is too large for a results file (limit {MAX_RESULTS_BYTES})")
        return None
    try:
        doc = _read_json(source, f)
    except ValueError as e:  # not JSON (json.JSONDecodeError), or not UTF-8
        reject(f"invalid JSON: {e}")
        return None
    if not must_be_results and not is_results_document(doc):
        return None  # some other JSON file, not an lm-eval results file (nor its bare results mapping)
    try:
        parsed = parse_results(doc, f.path)
    except ValueError as e:
        reject(f"not an lm-eval results file: {e}")
        return None
    result.discovered_files += 1
    return parsed


def _planned_run(source: Source, f: ListedFile, parsed: ParsedResults, listing: list[ListedFile]) -> PlannedRun:
    samples = pair_samples(f.path, parsed.timestamp, parsed.model, [task.name for task in parsed.leaf_tasks],
                           listing)
    parts = [source.fingerprint(f)] + sorted(
        f"{s.path}={source.fingerprint(s)}" for files in samples.values() for s in files)
    specs = {task.name: task_spec(task) for task in parsed.leaf_tasks}
    for name in samples:
        specs.setdefault(name, task_spec(TaskResult(name=name, is_group=False, metrics=[])))
    return PlannedRun(f, parsed, samples, hashlib.sha256("\n".join(parts).encode()).hexdigest(), specs)


def plan_runs(source: Source, listing: list[ListedFile], explicit: list[str], limit: int | None,
              result: ImportResult) -> list[PlannedRun]:
    """The runs to import from `listing`: the `explicit` results files (NotFound for one not listed), else
    every file the layout names or that parses as results, at most `limit`. Files that fail are counted
    and listed in `result.errors` when they had to be results."""
    candidates, named, limit = _candidates(source, listing, explicit, limit)
    plans = []
    for f in candidates:
        if limit is not None and result.discovered_files >= limit:
            break
        parsed = _parse_candidate(source, f, f.path in named, result)
        if parsed is not None:
            plans.append(_planned_run(source, f, parsed, listing))
    return plans


def task_names(plans: list[PlannedRun]) -> set[str]:
    """Every task the planned runs have results or samples for."""
    names = set()
    for plan in plans:
        names |= {task.name for task in plan.parsed.leaf_tasks} | set(plan.samples)
    return names

