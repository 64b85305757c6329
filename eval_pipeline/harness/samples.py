"""Stream lm-eval per-sample logs (JSONL, or one JSON array as up to 0.4.2) as normalised rows."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import IO, Any, Iterator

import ijson
import orjson

from eval_pipeline.errors import MalformedFile
from eval_pipeline.harness.jsonio import loads

FIXED_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics",
              "doc_hash", "prompt_hash", "target_hash", "task_name"}


@dataclass(slots=True)
class Sample:
    """One record of an lm-eval samples log, normalised: doc, target and arguments as lm-eval wrote them."""

    doc_id: int
    filter: str
    doc: Any
    target: Any
    arguments: Any  # as lm-eval wrote them; request_args() gives [[arg_0, arg_1], ...]
    metrics: dict[str, Any]  # per-sample metric values: floats, or structures only the aggregation reads
    doc_hash: str | None
    prompt_hash: str | None
    target_hash: str | None


def iter_records(stream: IO[bytes], path: str) -> Iterator[tuple[int, bytes, Any]]:
    """Yield (line or item number, the record's JSON bytes, decoded record), whatever the extension claims.

    JSONL lines are passed on as they are; items of a JSON array are re-encoded once.
    """
    head, lineno = stream.read(1), 0
    while head and head in b" \t\r\n\xef\xbb\xbf":
        lineno += head == b"\n"
        head = stream.read(1)
    if not head:
        return
    if head == b"[":
        yield from _iter_array(head, stream, path)
        return
    for line in chain((head + stream.readline(),), stream):
        lineno += 1
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            if not line.strip():
                continue
            try:
                record = loads(line)
            except ValueError:
                raise MalformedFile(path, f"invalid JSON ({e})", line=lineno) from None
        yield lineno, line.rstrip(b"\r\n"), record


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


def _iter_array(head: bytes, stream: IO[bytes], path: str) -> Iterator[tuple[int, bytes, Any]]:
    index = 0
    try:
        for index, item in enumerate(ijson.items(_Prefixed(head, stream), "item", use_float=True), 1):
            yield index, orjson.dumps(item), item
    except ijson.JSONError as e:
        raise MalformedFile(path, f"invalid JSON array after item {index} ({e})") from None


def request_args(raw: Any) -> list[list[Any]]:
    """Both shapes as [[arg_0, arg_1], ...]: {gen_args_i: {arg_j}} (0.4.3+) and a list of lists.

    lm-eval writes gen_args_0.. and arg_0.. in order, and JSON objects keep their order when decoded.
    """
    if isinstance(raw, dict):
        return [list(a.values()) if isinstance(a, dict) else [a] for a in raw.values()]
    if isinstance(raw, list):
        return [list(a) if isinstance(a, (list, tuple)) else [a] for a in raw]
    return [] if raw is None else [[raw]]


def normalise(record: Any, path: str, line: int, default_filter: str) -> Sample:
    """The Sample of one decoded record (line `line` of `path`); `default_filter` when it names none (0.3.x).

    Raises MalformedFile naming file and line when the record is not an object, has no integer doc_id, or
    its arguments are neither an object nor a list.
    """
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
    arguments = record.get("arguments")
    if arguments is not None and not isinstance(arguments, (dict, list)):
        raise MalformedFile(path, "'arguments' is neither an object nor a list", line=line)
    return Sample(
        doc_id=doc_id,
        filter=str(record.get("filter") or default_filter),
        doc=record.get("doc"),
        target=record.get("target"),
        arguments=arguments,
        # Numbers become floats (bools too: True is 1.0); structures stay for their aggregation to read.
        metrics={n: float(v) if isinstance(v := record[n], (int, float)) else v for n in names if n in record},
        doc_hash=record.get("doc_hash"),
        prompt_hash=record.get("prompt_hash"),
        target_hash=record.get("target_hash"),
    )


def request_of(sample: Sample) -> tuple[str, str, list[str], dict[str, Any]]:
    """(request kind, prompt, continuations, gen kwargs) as lm-eval recorded the doc's requests."""
    try:
        args = request_args(sample.arguments)
    except TypeError:
        args = []
    if not args:
        return "generate_until", "", [], {}
    first = args[0]
    prompt = first[0] if first else ""
    if len(first) > 1 and isinstance(first[1], dict):
        return "generate_until", str(prompt), [], first[1]
    if len(first) == 1:  # lm-eval's loglikelihood_rolling request has the one argument
        return "loglikelihood_rolling", str(prompt), [], {}
    continuations = [str(a[1]) for a in args if len(a) > 1]
    return "loglikelihood", str(prompt), continuations, {}


def request_contexts(sample: Sample) -> list[str]:
    """The context of each loglikelihood request of a doc: usually one shared prompt, but tasks such as
    winogrande vary the context and keep the continuation."""
    try:
        args = request_args(sample.arguments)
    except TypeError:
        return []
    return [str(a[0]) for a in args if len(a) > 1 and not isinstance(a[1], dict)]
