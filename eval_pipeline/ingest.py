"""Stream one run's samples files into the lake (or only count them, for a dry run).

Memory is bounded by CHUNK rows: samples are decoded line by line, turned into columns and flushed.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
import pyarrow as pa

from eval_pipeline.harness.layout import ListedFile
from eval_pipeline.harness.samples import Sample, iter_records, normalise, request_of
from eval_pipeline.lake import Lake, StoredFile

CHUNK = 4096

SAMPLES_SCHEMA = pa.schema([
    ("task", pa.string()), ("doc_id", pa.int64()), ("filter", pa.string()),
    ("doc", pa.string()), ("target", pa.string()), ("arguments", pa.string()),
    ("resps", pa.string()), ("filtered_resps", pa.string()), ("metrics", pa.string()),
    ("scores", pa.map_(pa.string(), pa.float64())),
    ("doc_hash", pa.string()), ("prompt_hash", pa.string()), ("target_hash", pa.string()),
])

INPUTS_SCHEMA = pa.schema([
    ("doc_id", pa.int64()), ("request_kind", pa.string()), ("prompt", pa.string()),
    ("continuations", pa.list_(pa.string())), ("gen_kwargs", pa.string()),
    ("target", pa.string()), ("doc", pa.string()),
])


def to_json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):  # e.g. integers beyond 64 bits
        return json.dumps(value, ensure_ascii=False)


class _Columns:
    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.cols: dict[str, list] = {n: [] for n in schema.names}

    def __len__(self) -> int:
        return len(self.cols[self.schema.names[0]])

    def add(self, *values: Any) -> None:
        for name, v in zip(self.schema.names, values):
            self.cols[name].append(v)

    def take(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_pydict(self.cols, schema=self.schema)
        self.cols = {n: [] for n in self.schema.names}
        return batch


@dataclass
class MeanStat:
    total: float = 0.0
    n: int = 0
    numeric: bool = True

    def add(self, v: Any) -> None:
        if isinstance(v, float):
            self.total += v
            self.n += 1
        else:
            self.numeric = False

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.numeric and self.n else None


@dataclass
class TaskInputs:
    stored: StoredFile | None
    sha256: str
    n_docs: int
    request_kind: str
    gen_kwargs: dict


@dataclass
class IngestedRun:
    samples: int = 0
    samples_file: StoredFile | None = None
    means: dict[tuple[str, str, str], MeanStat] = field(default_factory=lambda: defaultdict(MeanStat))
    inputs: dict[str, TaskInputs] = field(default_factory=dict)
    request_kinds: dict[str, str] = field(default_factory=dict)


class _InputsWriter:
    """One task's evaluation inputs: the first request of each doc, hashed as it streams."""

    def __init__(self, stack: ExitStack, lake: Lake | None, rel: str):
        self._sink = stack.enter_context(lake.parquet_writer(rel, INPUTS_SCHEMA)) if lake else None
        self._cols = _Columns(INPUTS_SCHEMA)
        self._seen: set[int] = set()
        self._hash = hashlib.sha256()
        self.kind = ""
        self.gen_kwargs: dict = {}

    def add(self, s: Sample) -> None:
        if s.doc_id in self._seen:
            return
        self._seen.add(s.doc_id)
        kind, prompt, continuations, gen_kwargs = request_of(s)
        self.kind = self.kind or kind
        self.gen_kwargs = self.gen_kwargs or gen_kwargs
        row = (s.doc_id, kind, prompt, continuations, to_json(gen_kwargs), to_json(s.target), to_json(s.doc))
        self._hash.update(orjson.dumps(row[:6]) + b"\n")
        self._cols.add(*row)
        if len(self._cols) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if len(self._cols):
            batch = self._cols.take()
            if self._sink:
                self._sink.write(batch)

    def result(self) -> TaskInputs:
        return TaskInputs(getattr(self._sink, "stored", None), self._hash.hexdigest(), len(self._seen),
                          self.kind, self.gen_kwargs)


def ingest_run(
    samples_by_task: dict[str, list[ListedFile]],
    open_file: Callable,
    default_filters: dict[str, str],
    lake: Lake | None,
    samples_rel: str,
    inputs_rel: Callable[[str], str],
    wants_inputs: set[str],
) -> IngestedRun:
    """Read every samples file of a run; with a lake, publish its samples (and the inputs asked for).

    Raises MalformedFile naming the file and line; then nothing of this run becomes visible.
    """
    out = IngestedRun()
    cols = _Columns(SAMPLES_SCHEMA)
    writers: dict[str, _InputsWriter] = {}
    with ExitStack() as stack:
        sink = stack.enter_context(lake.parquet_writer(samples_rel, SAMPLES_SCHEMA)) if lake else None
        for task in sorted(samples_by_task):
            if task in wants_inputs:
                writers[task] = _InputsWriter(stack, lake, inputs_rel(task))
            for f in samples_by_task[task]:
                with open_file(f) as stream:
                    for line, record in iter_records(stream, f.path):
                        s = normalise(record, f.path, line, default_filters.get(task, "none"))
                        _add_sample(out, cols, task, s)
                        if task in writers:
                            writers[task].add(s)
                        if len(cols) >= CHUNK and sink:
                            sink.write(cols.take())
                        elif len(cols) >= CHUNK:
                            cols.take()
        if sink and len(cols):
            sink.write(cols.take())
        for w in writers.values():
            w.flush()
    for task, w in writers.items():
        out.inputs[task] = w.result()
    out.samples_file = getattr(sink, "stored", None)
    return out


def _add_sample(out: IngestedRun, cols: _Columns, task: str, s: Sample) -> None:
    out.samples += 1
    if task not in out.request_kinds:
        out.request_kinds[task] = request_of(s)[0]
    for name, value in s.metrics.items():
        out.means[(task, name, s.filter)].add(value)
    cols.add(task, s.doc_id, s.filter, to_json(s.doc), to_json(s.target), to_json(s.arguments),
             to_json(s.resps), to_json(s.filtered_resps), to_json(s.metrics),
             [(k, v) for k, v in s.metrics.items() if isinstance(v, float)],
             s.doc_hash, s.prompt_hash, s.target_hash)
