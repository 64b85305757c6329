"""Stream lm-eval per-sample logs (JSONL, or one JSON array as up to 0.4.2) as normalised rows."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import IO, Any, Iterator

import ijson
import orjson

from eval_pipeline.errors import MalformedFile

FIXED_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics",
              "doc_hash", "prompt_hash", "target_hash", "task_name"}


@dataclass(slots=True)
class Sample:
    doc_id: int
    filter: str
    doc: Any
    target: Any
    arguments: list[list[Any]]  # one [arg_0, arg_1] per request
    resps: Any
    filtered_resps: Any
    metrics: dict[str, Any]  # per-sample metric values: floats, or structures only the aggregation reads
    doc_hash: str | None
    prompt_hash: str | None
    target_hash: str | None


def iter_records(stream: IO[bytes], path: str) -> Iterator[tuple[int, Any]]:
    """Yield (line or item number, decoded record) whatever the extension claims."""
    head = stream.read(1)
    while head and head in b" \t\r\n\xef\xbb\xbf":
        head = stream.read(1)
    if not head:
        return
    if head == b"[":
        yield from _iter_array(head, stream, path)
        return
    first = head + stream.readline()
    lineno = 0
    for line in _chain(first, stream):
        lineno += 1
        if not line.strip():
            continue
        try:
            yield lineno, orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise MalformedFile(path, f"invalid JSON ({e})", line=lineno) from None


def _chain(first: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    yield first
    yield from stream


class _Prefixed:
    """A read()-able stream with bytes already consumed put back in front."""

    def __init__(self, head: bytes, stream: IO[bytes]):
        self._head, self._stream = head, stream

    def read(self, n: int = -1) -> bytes:
        if n == 0:  # ijson probes with read(0) to tell bytes from text
            return b""
        if self._head:
            out, self._head = self._head, b""
            return out
        return self._stream.read(n)


def _iter_array(head: bytes, stream: IO[bytes], path: str) -> Iterator[tuple[int, Any]]:
    index = 0
    try:
        for index, item in enumerate(ijson.items(_Prefixed(head, stream), "item", use_float=True), 1):
            yield index, item
    except ijson.JSONError as e:
        raise MalformedFile(path, f"invalid JSON array after item {index} ({e})") from None


def _index(key: Any) -> int:
    tail = str(key).rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _arguments(raw: Any) -> list[list[Any]]:
    """Both shapes as [[arg_0, arg_1], ...]: {gen_args_i: {arg_j}} (0.4.3+) and a list of lists."""
    if isinstance(raw, dict):
        out = []
        for _, arg in sorted(raw.items(), key=lambda kv: _index(kv[0])):
            out.append([arg[k] for k in sorted(arg, key=_index)] if isinstance(arg, dict) else [arg])
        return out
    if isinstance(raw, list):
        return [list(a) if isinstance(a, (list, tuple)) else [a] for a in raw]
    return [] if raw is None else [[raw]]


def _metric_value(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return value


def normalise(record: Any, path: str, line: int, default_filter: str) -> Sample:
    if not isinstance(record, dict):
        raise MalformedFile(path, "sample is not a JSON object", line=line)
    doc_id = record.get("doc_id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (int, float, str)):
        raise MalformedFile(path, "sample has no integer 'doc_id'", line=line)
    try:
        doc_id = int(doc_id)
    except ValueError:
        raise MalformedFile(path, f"doc_id {doc_id!r} is not an integer", line=line) from None
    names = record.get("metrics")
    if not isinstance(names, list):
        names = [k for k in record if k not in FIXED_KEYS]
    try:
        arguments = _arguments(record.get("arguments"))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise MalformedFile(path, "'arguments' has an unknown shape", line=line) from None
    return Sample(
        doc_id=doc_id,
        filter=str(record.get("filter") or default_filter),
        doc=record.get("doc"),
        target=record.get("target"),
        arguments=arguments,
        resps=record.get("resps"),
        filtered_resps=record.get("filtered_resps"),
        metrics={n: _metric_value(record[n]) for n in names if n in record},
        doc_hash=record.get("doc_hash"),
        prompt_hash=record.get("prompt_hash"),
        target_hash=record.get("target_hash"),
    )


def is_finite_number(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def request_of(sample: Sample) -> tuple[str, str, list[str], dict]:
    """(request kind, prompt, continuations, gen kwargs) as lm-eval recorded the doc's requests."""
    args = sample.arguments
    if not args:
        return "generate_until", "", [], {}
    first = args[0]
    prompt = first[0] if first else ""
    if len(first) > 1 and isinstance(first[1], dict):
        return "generate_until", str(prompt), [], first[1]
    continuations = [str(a[1]) for a in args if len(a) > 1]
    return "loglikelihood", str(prompt), continuations, {}
