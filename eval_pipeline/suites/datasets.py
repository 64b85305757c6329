"""Rows of a suite manifest's dataset (MKA1's EvalDataset): data files of a Hugging Face dataset repo,
read as JSON lines, JSON, CSV or Parquet."""
from __future__ import annotations

import csv
import fnmatch
import io
import os
import posixpath
from typing import Any, cast

import orjson
import pyarrow.parquet as pq

from eval_pipeline.errors import InvalidInput, MalformedFile
from eval_pipeline.stores.sources import HubSource, ListedFile

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def dataset_files(listing: list[ListedFile], split: str, data_files: Any, field: str) -> list[ListedFile]:
    """The files of `split`: `data_files` patterns (a string, a list, or a map by split) when given, else
    the Hub's conventions (`<split>.jsonl`, `data/<split>-00000-of-00001.parquet`, `<split>/...`).

    Only readable formats (FORMATS) count. Raises InvalidInput (`<field>.data_files` or `<field>.split`)
    when no file matches."""
    readable = [f for f in listing if posixpath.splitext(f.path)[1] in FORMATS]
    if data_files is not None:
        patterns = data_files.get(split) if isinstance(data_files, dict) else data_files
        if patterns is None:
            raise InvalidInput(f"{field}.data_files", f"names no files for split {split!r}")
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        chosen = [f for f in readable if any(fnmatch.fnmatchcase(f.path, p) for p in patterns)]
        if not chosen:
            raise InvalidInput(f"{field}.data_files", f"{patterns} match no data file of the repo")
        return chosen

    def of_split(path: str) -> bool:
        stem = posixpath.splitext(posixpath.basename(path))[0]
        parts = path.split("/")[:-1]
        return stem == split or stem.startswith(f"{split}-") or stem.startswith(f"{split}.") or split in parts

    chosen = [f for f in readable if of_split(f.path)]
    if not chosen:
        raise InvalidInput(f"{field}.split", f"no data file of split {split!r} (looked for {split}.jsonl, "
                                             f"{split}-*.parquet, {split}/...)")
    return chosen


def read_rows(data: bytes, path: str, fmt: str | None) -> list[dict[str, Any]]:
    """Every row of one data file, as dicts; `fmt` (jsonl, json, csv, parquet) defaults to the extension's.

    Raises MalformedFile naming `path` (and the line, for JSON lines) for a bad line or a non-object row."""
    fmt = fmt or FORMATS.get(posixpath.splitext(path)[1])
    if fmt == "parquet":
        try:
            return cast("list[dict[str, Any]]", pq.read_table(io.BytesIO(data)).to_pylist())
        except Exception as e:  # noqa: BLE001  (pyarrow raises several types for a corrupt file)
            raise MalformedFile(path, f"not a Parquet file: {e}") from None
    if fmt == "csv":
        try:
            return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        except (UnicodeDecodeError, csv.Error) as e:
            raise MalformedFile(path, f"not UTF-8 CSV: {e}") from None
    if fmt == "json":
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise MalformedFile(path, f"not JSON: {e}") from None
        rows = value.get("data") if isinstance(value, dict) else value
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise MalformedFile(path, "must hold a list of objects (or {\"data\": [...]})")
        return rows
    rows = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise MalformedFile(path, f"not JSON: {e}", n) from None
        if not isinstance(row, dict):
            raise MalformedFile(path, "a row must be a JSON object", n)
        rows.append(row)
    return rows


def load_rows(dataset: dict[str, Any], field: str, hub_token: str | None = None) -> list[dict[str, Any]]:
    """The rows a manifest dataset names, in file order, at most `max_rows`.

    `dataset` is MKA1's EvalDataset (source, path, name, split, revision, data_files, format, max_rows);
    `hub_token` reads a private repo. Raises InvalidInput naming `<field>.<key>`, MalformedFile for a bad
    file, and NotFound / SourceAuthError / SourceUnavailable from the Hub."""
    source = dataset.get("source") or ("huggingface" if dataset.get("path") else None)
    if source == "file":
        raise InvalidInput(f"{field}.source", "file datasets are not served (no file upload here): publish the "
                                              "rows in a Hugging Face dataset repo and use source huggingface")
    if source != "huggingface":
        raise InvalidInput(f"{field}.source", "must be huggingface (with path naming the dataset repo)")
    repo = dataset.get("path")
    if not isinstance(repo, str) or not repo.strip("/"):
        raise InvalidInput(f"{field}.path", "is required: the dataset repo id (owner/name)")
    fmt = dataset.get("format")
    if fmt is not None and fmt not in ("jsonl", "csv"):
        raise InvalidInput(f"{field}.format", "must be jsonl or csv")
    hub = HubSource(repo, dataset.get("revision") or "main", hub_token, os.environ.get("HF_ENDPOINT") or None)
    try:
        prefix = f"{dataset['name']}/" if dataset.get("name") else ""
        files = dataset_files(hub.list(prefix), dataset.get("split") or "test", dataset.get("data_files"), field)
        rows: list[dict[str, Any]] = []
        limit = dataset.get("max_rows")
        for f in files:
            with hub.open(f) as fh:
                rows += read_rows(fh.read(), f.path, fmt)
            if limit is not None and len(rows) >= limit:
                break
        return rows[:limit] if limit is not None else rows
    finally:
        hub.close()
