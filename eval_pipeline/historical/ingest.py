"""Stream one run's samples files into the lake (or only count them, for a dry run).

Memory is bounded by CHUNK rows: samples are decoded line by line, buffered as rows and flushed as one
Parquet row group per chunk. This loop is the import's hot path (see bench/import.py).
"""
from __future__ import annotations

import gc
import hashlib
import json
from collections import defaultdict
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator

import orjson
import pyarrow as pa

from eval_pipeline.errors import MalformedFile
from eval_pipeline.harness.samples import Sample, iter_records, normalise, request_contexts, request_of
from eval_pipeline.stores.lake import BULK, Lake, ParquetSink, StoredFile
from eval_pipeline.stores.sources import ListedFile
from eval_pipeline.suites.tasks import INPUTS_SCHEMA, TaskInputs

CHUNK = 4096


# One row per (doc, filter): the typed columns that checks and queries need, and `record`, the sample's
# JSON exactly as lm-eval logged it (doc, arguments, resps, filtered_resps, structured metric values).


SAMPLES_SCHEMA = pa.schema([
    ("task", pa.string()), ("doc_id", pa.int64()), ("filter", pa.string()), ("target", pa.string()),
    # The numeric per-sample metrics (two list columns: an order of magnitude cheaper to build than a map).
    ("score_names", pa.list_(pa.string())), ("score_values", pa.list_(pa.float64())),
    pa.field("doc_hash", pa.string(), metadata=BULK), pa.field("prompt_hash", pa.string(), metadata=BULK),
    pa.field("target_hash", pa.string(), metadata=BULK), pa.field("record", pa.string(), metadata=BULK),
])




def to_json(value: Any) -> bytes:
    """UTF-8 JSON; Arrow string columns take these bytes as they are."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):  # e.g. integers beyond 64 bits
        return json.dumps(value, ensure_ascii=False).encode()


class _Rows:
    """Row tuples buffered for one schema, written as a record batch every CHUNK rows."""

    rows: list[tuple[Any, ...]]  # buffered, in the schema's column order

    def __init__(self, schema: pa.Schema, sink: ParquetSink | None):
        self.schema, self.sink, self.rows = schema, sink, []

    def add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.rows and self.sink is not None:
            columns = [pa.array(col, type=f.type) for col, f in zip(zip(*self.rows), self.schema)]
            self.sink.write(pa.RecordBatch.from_arrays(columns, schema=self.schema))
        self.rows = []


@dataclass
class MeanStat:
    """The running sum and count of one per-sample metric; `numeric` false once a value was not a float."""

    total: float = 0.0
    n: int = 0
    numeric: bool = True

    @property
    def mean(self) -> float | None:
        """The mean of the values; None when there were none or one was not numeric."""
        return self.total / self.n if self.numeric and self.n else None


@dataclass
class IngestedRun:
    """What reading a run's samples gave: the sample count, the samples file written (None on a dry run),
    {(task, metric, filter): MeanStat}, the inputs of the tasks it provided, {task: request kind}."""

    samples: int = 0
    samples_file: StoredFile | None = None
    means: dict[tuple[str, str, str], MeanStat] = field(default_factory=lambda: defaultdict(MeanStat))
    inputs: dict[str, TaskInputs] = field(default_factory=dict)
    request_kinds: dict[str, str] = field(default_factory=dict)


class _DocIds:
    """Doc ids seen so far: one bit each for lm-eval's dense ids (0..N-1), a set for any others.

    A set costs about 60 bytes per id, which would make memory grow with the file; the bitmap is
    110 kB for a million docs.
    """

    DENSE_LIMIT = 1 << 26  # ids below this use the bitmap (at most 8 MB)

    def __init__(self) -> None:
        self._bits = bytearray()
        self._others: set[int] = set()
        self.count = 0

    def add(self, doc_id: int) -> bool:
        """Record `doc_id`; False if it had been seen already."""
        if not 0 <= doc_id < self.DENSE_LIMIT:
            if doc_id in self._others:
                return False
            self._others.add(doc_id)
        else:
            byte, bit = divmod(doc_id, 8)
            if byte >= len(self._bits):
                self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
            if self._bits[byte] >> bit & 1:
                return False
            self._bits[byte] |= 1 << bit
        self.count += 1
        return True


class _InputsWriter:
    """One task's evaluation inputs: the first request of each doc, hashed as it streams."""

    def __init__(self, stack: ExitStack, lake: Lake | None, rel: str):
        sink = stack.enter_context(lake.parquet_writer(rel, INPUTS_SCHEMA)) if lake else None
        self._sink = sink
        self._rows = _Rows(INPUTS_SCHEMA, sink)
        self._seen = _DocIds()
        self._hash = hashlib.sha256()
        self.gen_kwargs: dict[str, Any] = {}

    def add(self, s: Sample, target_json: bytes, doc_json: bytes) -> None:
        """Buffer the doc's first request as an inputs row (later samples of the same doc are skipped)."""
        if not self._seen.add(s.doc_id):
            return
        kind, prompt, continuations, gen_kwargs = request_of(s)
        self.gen_kwargs = self.gen_kwargs or gen_kwargs
        contexts = request_contexts(s) if kind == "loglikelihood" else []
        if all(c == prompt for c in contexts):
            contexts = []
        row = (s.doc_id, kind, prompt, continuations, to_json(gen_kwargs), target_json, doc_json, contexts)
        self._hash.update(orjson.dumps(row[:4]) + row[4] + row[5] + (orjson.dumps(contexts) if contexts else b"")
                          + b"\n")
        self._rows.add(row)

    def result(self) -> TaskInputs:
        """The task's inputs: the file written (None on a dry run), the rows' sha256, docs, gen kwargs."""
        return TaskInputs(self._sink.stored if self._sink else None, self._hash.hexdigest(), self._seen.count,
                          self.gen_kwargs)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The loop makes millions of short-lived, acyclic objects: the cycle collector only costs time
    there (about 15% measured). It is switched back on afterwards, and was it off already, left off."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class IngestJob:
    """One run's samples to read, and where in the lake they and the inputs it provides go."""

    samples: dict[str, list[ListedFile]]
    open_file: Callable[[ListedFile], AbstractContextManager[IO[bytes]]]
    default_filters: dict[str, str]
    samples_rel: str
    inputs_rels: dict[str, str]  # the tasks whose inputs this run provides -> their lake paths


@dataclass
class IngestOutcome:
    """A run read (`run`), or the reason it could not be (`error`, and `run` None)."""

    run: IngestedRun | None
    error: dict[str, Any] | None  # {path, reason, line} of the file that made the run fail


def run_job(job: IngestJob, lake: Lake | None) -> IngestOutcome:
    """Ingest one run (lake None: a dry run, nothing is written); a bad file is an outcome, not a raise."""
    try:
        return IngestOutcome(ingest_run(job, lake), None)
    except MalformedFile as e:
        return IngestOutcome(None, {"path": e.path, "reason": e.reason, "line": e.line})


def ingest_run(job: IngestJob, lake: Lake | None) -> IngestedRun:
    """Read every samples file of a run; with a lake, publish its samples (and the inputs asked for).

    Raises MalformedFile naming the file and line; then nothing of this run becomes visible.
    """
    out = IngestedRun()
    writers: dict[str, _InputsWriter] = {}
    with ExitStack() as stack:
        stack.enter_context(_gc_paused())
        sink = stack.enter_context(lake.parquet_writer(job.samples_rel, SAMPLES_SCHEMA)) if lake else None
        rows = _Rows(SAMPLES_SCHEMA, sink)
        for task in sorted(job.samples):
            writer = None
            if task in job.inputs_rels:
                writer = writers[task] = _InputsWriter(stack, lake, job.inputs_rels[task])
            for f in job.samples[task]:
                with job.open_file(f) as stream:
                    for line, raw, record in iter_records(stream, f.path):
                        s = normalise(record, f.path, line, job.default_filters.get(task, "none"))
                        _add_sample(out, rows, writer, task, s, raw)
        rows.flush()
        for w in writers.values():
            w._rows.flush()
    out.inputs = {task: w.result() for task, w in writers.items()}
    out.samples_file = sink.stored if sink else None
    return out


def _add_sample(out: IngestedRun, rows: _Rows, writer: _InputsWriter | None, task: str, s: Sample,
                raw: bytes) -> None:
    out.samples += 1
    if task not in out.request_kinds:
        out.request_kinds[task] = request_of(s)[0]
    names, values = [], []
    for name, value in s.metrics.items():
        stat = out.means[(task, name, s.filter)]
        if isinstance(value, float):
            stat.total += value
            stat.n += 1
            names.append(name)
            values.append(value)
        else:
            stat.numeric = False
    target = to_json(s.target)
    if writer is not None:
        writer.add(s, target, to_json(s.doc))
    # _Rows.add, inlined: this runs once per sample.
    rows.rows.append((task, s.doc_id, s.filter, target, names, values, s.doc_hash, s.prompt_hash,
                      s.target_hash, raw))
    if len(rows.rows) >= CHUNK:
        rows.flush()

