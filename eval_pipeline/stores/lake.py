"""The lake: Parquet (and small JSON documents) on fsspec, a local folder by default or s3:// via s3fs.

Every write goes to a private temporary file first and becomes visible in one step: an atomic rename on a
local filesystem, a single completed (multipart) upload on S3. Readers never see a partial file.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, cast

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

BULK = {"bulk": "1"}  # field metadata: ParquetSink writes such a column with bulk-column settings


@dataclass(frozen=True)
class StoredFile:
    """A published lake file: its path, size in bytes, sha256 (hex) and, for Parquet, its row count."""

    path: str  # relative to the lake root
    bytes: int
    sha256: str
    rows: int | None = None


class ParquetSink:
    """Accumulates record batches into one Parquet file; memory is bounded by the batch size.

    Columns whose field metadata says `bulk` (large, nearly unique values such as raw JSON) skip the
    dictionary and min/max statistics: both cost time and buy nothing there.
    """

    def __init__(self, local_path: str, schema: pa.Schema):
        plain = [f.name for f in schema if not (f.metadata or {}).get(b"bulk")]
        self._writer = pq.ParquetWriter(local_path, schema, compression="zstd", use_dictionary=plain,
                                        write_statistics=plain)
        self.schema = schema
        self.rows = 0
        self.stored: StoredFile | None = None  # set once the file is published

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append the batch's (or table's) rows; its schema must be the sink's."""
        self._writer.write(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        """Finish the Parquet file (its footer); nothing can be written after."""
        self._writer.close()


def _sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Lake:
    """The lake at `url` (a folder, file:// or s3:// with an optional S3 endpoint); paths are relative to its
    root, and a path that is absolute or has a `..` part raises ValueError."""

    def __init__(self, url: str, s3_endpoint_url: str | None = None):
        options = {}
        if url.startswith("s3://") and s3_endpoint_url:
            options["endpoint_url"] = s3_endpoint_url
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **options)
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def _full(self, rel: str) -> str:
        if rel.startswith("/") or ".." in rel.split("/"):
            raise ValueError(f"lake path must be relative and stay inside the lake: {rel!r}")
        return f"{self.root}/{rel}"

    def uri(self, rel: str) -> str:
        """The full URL of lake path `rel` (the lake's URL joined with it; not checked)."""
        return self.url.rstrip("/") + "/" + rel

    @contextmanager
    def _staged(self, rel: str) -> Iterator[str]:
        """Yield a local temp path; on success publish it at `rel` in one step."""
        target = self._full(rel)
        if self.is_local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=str(Path(target).parent))
        else:
            fd, tmp = tempfile.mkstemp(prefix="eval-pipeline-lake-")
        os.close(fd)
        try:
            yield tmp
            if self.is_local:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            else:
                self.fs.put_file(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @contextmanager
    def parquet_writer(self, rel: str, schema: pa.Schema) -> Iterator[ParquetSink]:
        """Stream batches into `rel`; the file appears only when the block exits cleanly."""
        with self._staged(rel) as tmp:
            sink = ParquetSink(tmp, schema)
            try:
                yield sink
            finally:
                sink.close()
            sink.stored = StoredFile(rel, os.path.getsize(tmp), _sha256_of(tmp), sink.rows)

    def write_table(self, rel: str, table: pa.Table) -> StoredFile:
        """Write `table` as one Parquet file at `rel`, published atomically (replacing what was there)."""
        with self.parquet_writer(rel, table.schema) as sink:
            sink.write(table)
        assert sink.stored is not None  # parquet_writer sets it when the block exits cleanly
        return sink.stored

    def write_bytes(self, rel: str, data: bytes) -> StoredFile:
        """Write `data` at `rel`, published atomically (replacing what was there); rows is None."""
        with self._staged(rel) as tmp:
            Path(tmp).write_bytes(data)
        return StoredFile(rel, len(data), hashlib.sha256(data).hexdigest())

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        """The Parquet file at `rel` (only `columns`, when given); FileNotFoundError when it is not there."""
        with self.fs.open(self._full(rel), "rb") as f:
            return pq.read_table(f, columns=columns)

    def read_bytes(self, rel: str) -> bytes:
        """The whole content of the file at `rel`; FileNotFoundError when it is not there."""
        with self.fs.open(self._full(rel), "rb") as f:
            return cast(bytes, f.read())  # fsspec is untyped: its binary files read bytes

    def exists(self, rel: str) -> bool:
        """Whether a file (or folder) is at `rel`."""
        return cast(bool, self.fs.exists(self._full(rel)))  # fsspec is untyped

    def list(self, prefix: str = "") -> list[str]:
        """Every file below `prefix`, relative to the lake root, temp files excluded."""
        base = self._full(prefix) if prefix else self.root
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base)
        out = []
        for p in found:
            rel = p[len(self.root) + 1 :] if p.startswith(self.root) else p
            if not any(part.startswith(".tmp-") for part in Path(rel).parts):
                out.append(rel)
        return sorted(out)
