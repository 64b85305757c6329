"""Where lm-eval puts its files: which listed files are results, and which samples belong to each."""
from __future__ import annotations

import posixpath
import re

from eval_pipeline.stores.sources import ListedFile

TS = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?"


SAMPLES_NAME = re.compile(rf"^samples_(?P<task>.+)_(?P<ts>{TS}|[^_]+)\.jsonl?$")


RESULTS_NAME = re.compile(r"^results.*\.json$")


_UNSAFE = re.compile(r"[\"<>:/|\\?*\[\]]+")


def sanitize_model_name(name: str) -> str:
    """The model's folder name as lm-eval writes it: runs of `"<>:/|\\?*[]` become `__` (lm-eval's
    utils.sanitize_model_name)."""
    return _UNSAFE.sub("__", name)


def is_samples_file(path: str) -> bool:
    """Whether the file name is lm-eval's `samples_<task>_<timestamp or suffix>.json[l]`."""
    return SAMPLES_NAME.match(posixpath.basename(path)) is not None


def classify(files: list[ListedFile]) -> tuple[list[ListedFile], list[ListedFile]]:
    """(named results files, other JSON files that may be results of vintages with free names)."""
    named: list[ListedFile] = []
    maybe: list[ListedFile] = []
    for f in files:
        base = posixpath.basename(f.path)
        if not base.endswith(".json") or is_samples_file(f.path):
            continue
        (named if RESULTS_NAME.match(base) else maybe).append(f)
    return named, maybe


def _samples_index(files: list[ListedFile]) -> list[tuple[ListedFile, str, str]]:
    out = []
    for f in files:
        m = SAMPLES_NAME.match(posixpath.basename(f.path))
        if m:
            out.append((f, m.group("task"), m.group("ts")))
    return out


def pair_samples(results_path: str, timestamp: str | None, model: str, tasks: list[str],
                 files: list[ListedFile]) -> dict[str, list[ListedFile]]:
    """Samples files of one results file, by task name (of `tasks` for fixed-name results).

    With a `timestamp` (results_<ts>.json, 0.4.3+): the samples files of that timestamp in the results file's
    folder, else in the only folder that has them, else in the folder named after the sanitised `model`.
    Without: the samples files beside the results file, named after a task.
    """
    folder = posixpath.dirname(results_path)
    indexed = _samples_index(files)
    by_task: dict[str, list[ListedFile]] = {}
    chosen: str | None
    task: str | None
    if timestamp:
        same_ts = [(f, t) for f, t, ts in indexed if ts == timestamp]
        folders = {posixpath.dirname(f.path) for f, _ in same_ts}
        if folder in folders:
            chosen = folder
        elif len(folders) == 1:
            chosen = folders.pop()
        else:
            wanted = sanitize_model_name(model)
            chosen = next((d for d in sorted(folders) if posixpath.basename(d) == wanted), None)
        for f, task in same_ts:
            if posixpath.dirname(f.path) == chosen:
                by_task.setdefault(task, []).append(f)
        return by_task
    # Fixed-name results (0.3.x, 0.4.0-0.4.2): samples sit beside it, named after the task.
    known = sorted(tasks, key=len, reverse=True)
    for f in files:
        if posixpath.dirname(f.path) != folder:
            continue
        base = posixpath.basename(f.path)
        m = SAMPLES_NAME.match(base)
        if m and m.group("task") in tasks:
            by_task.setdefault(m.group("task"), []).append(f)
        elif base.endswith(".jsonl") and not m:
            task = next((t for t in known if base.endswith(f"_{t}.jsonl")), None)
            if task:
                by_task.setdefault(task, []).append(f)
    return by_task

