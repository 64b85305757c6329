"""Export tasks: a finished run's samples and metrics as a bundle in object storage or the lake.

queued -> running -> succeeded | failed. A bundle is the folder `<prefix>/<export id>/` holding, in format
`bundle`, `samples.parquet` and `samples.jsonl` (model, task, doc_id and exactly the selected content
columns) and `metrics.json` when metrics are selected; in format `lm-eval`, per model
`<model_name_sanitized>/results_<ts>.json` and `samples_<task>_<ts>.jsonl` as lm-eval 0.4.13 writes them
(lm_eval_results.py); in both, `manifest.json`, written last, listing every file with its sha256, size and
rows. The manifest is the commit mark: on the lake's local disk the folder is staged and renamed into place
in one step; on S3 the files go up one object at a time, the manifest after them, and a failure deletes
what was written, so a bundle is complete or absent.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, Self, cast

import fsspec
from pydantic import Field, field_validator, model_validator
from sqlalchemy import CursorResult, select, update

from eval_pipeline import ids
from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.exports.bundle import write_bundle
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.files import register_file
from eval_pipeline.stores.lake import Lake, StoredFile
from eval_pipeline.validation import Strict, parse_model

CONTENT = ("prompt", "prediction", "completion", "metrics", "system")
FORMATS = ("bundle", "lm-eval")
EXPORTABLE_RUN_STATUSES = ("completed",)


class ExportRequest(Strict):
    """The body of an export task: the run, where the bundle goes (`system`: the lake; `object`: an S3 `bucket`,
    under `prefix`), its `format` and, for format bundle, the sample columns (`content`, kept in CONTENT's
    order). Validation errors are InvalidInput naming the field (through `parse_model`)."""

    run_id: str = Field(min_length=1)
    storage_type: Literal["object", "system"] = "system"
    bucket: str | None = Field(None, min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str | None = Field(None, max_length=512)
    content: list[Literal["prompt", "prediction", "completion", "metrics", "system"]] | None = Field(
        None, min_length=1)
    # bundle: the columns of `content`; lm-eval: the run as lm-eval's own results and samples files
    format: Literal["bundle", "lm-eval"] = "bundle"

    @field_validator("content")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if len(set(v)) != len(v):
            raise ValueError("the same content is listed twice")
        return [c for c in CONTENT if c in v]

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip("/")
        if any(p in ("", ".", "..") for p in v.split("/")) and v:
            raise ValueError("must be a relative key prefix without empty, '.' or '..' parts")
        return v or None

    @model_validator(mode="after")
    def _content_for_format(self) -> Self:
        if self.format == "bundle" and self.content is None:
            raise InvalidInput("content", "is required for format bundle: a list of prompt, prediction, completion, "
                                          "metrics, system")
        if self.format == "lm-eval" and self.content is not None:
            raise InvalidInput("content", "is only for format bundle: an lm-eval export always holds lm-eval's "
                                          "results and samples files (samples, metrics and configs)")
        return self

    @model_validator(mode="after")
    def _bucket(self) -> Self:
        if self.storage_type == "object" and not self.bucket:
            raise InvalidInput("bucket", "is required when storage_type is object")
        if self.storage_type == "system" and self.bucket:
            raise InvalidInput("bucket", "is only for storage_type object (system storage is the service's own)")
        return self


def create_export(catalog: Catalog, request: dict[str, Any]) -> dict[str, Any]:
    """Record a queued export task of a completed run from a request body (ExportRequest's fields); returns
    its `eval.export` object. Raises InvalidInput naming the field (a body that is not a JSON object: "body"),
    NotFound (run), Conflict (the run is not completed)."""
    req = parse_model(ExportRequest, request) if isinstance(request, dict) else None
    if req is None:
        raise InvalidInput("body", "must be a JSON object")
    with catalog.session() as s:
        run = s.get(t.Run, req.run_id)
        if run is None:
            raise NotFound("run", req.run_id)
        if run.status not in EXPORTABLE_RUN_STATUSES:
            raise Conflict(f"run {run.id} is {run.status}; only a completed run can be exported")
        row = t.Export(id=ids.new_id("export"), run_id=run.id, storage_type=req.storage_type, bucket=req.bucket,
                       prefix=req.prefix, content=req.content or [], format=req.format, status="queued",
                       created_at=now(), created_ns=time.time_ns())
        s.add(row)
        s.flush()
        return export_object(row)


def export_object(row: t.Export) -> dict[str, Any]:
    """The `eval.export` object: id, run_id, storage_type, bucket, prefix, content, format, status, location (the
    bundle's URI), files (manifest entries, with file_id for system storage), error {code, message}, and
    created_at, started_at, finished_at in Unix seconds."""
    return {"id": row.id, "object": "eval.export", "run_id": row.run_id, "storage_type": row.storage_type,
            "bucket": row.bucket, "prefix": row.prefix, "content": list(row.content),
            "format": row.format or "bundle", "status": row.status,
            "location": row.location, "files": row.files, "error": row.error, "created_at": row.created_at,
            "started_at": row.started_at, "finished_at": row.finished_at}


def get_export(catalog: Catalog, export_id: str) -> dict[str, Any]:
    """The export task's `eval.export` object. Raises NotFound (export)."""
    with catalog.session() as s:
        row = s.get(t.Export, export_id)
        if row is None:
            raise NotFound("export", export_id)
        return export_object(row)


def queued_exports(catalog: Catalog) -> list[str]:
    """The ids of the queued export tasks, oldest first."""
    with catalog.session() as s:
        return list(s.scalars(select(t.Export.id).where(t.Export.status == "queued").order_by(t.Export.created_ns)))


def claim_export(catalog: Catalog, export_id: str) -> bool:
    """queued -> running for one taker only (the server's worker; the sensor's run key does the same)."""
    with catalog.session() as s:
        # an UPDATE's result is a CursorResult (it has rowcount); SQLAlchemy types Session.execute as Result
        return cast("CursorResult[Any]", s.execute(
            update(t.Export).where(t.Export.id == export_id, t.Export.status == "queued")
            .values(status="running", started_at=now()))).rowcount == 1


def _set(catalog: Catalog, export_id: str, **values: Any) -> dict[str, Any]:
    with catalog.session() as s:
        row = s.get(t.Export, export_id)
        assert row is not None  # an export task that run_export has just read
        for k, v in values.items():
            setattr(row, k, v)
        s.flush()
        return export_object(row)


class Destination:
    """Where a bundle goes: a filesystem and the bundle folder's path on it."""

    def __init__(self, fs: fsspec.AbstractFileSystem, folder: str, uri: str, local: bool) -> None:
        self.fs, self.folder, self.uri, self.local = fs, folder.rstrip("/"), uri.rstrip("/") + "/", local

    @classmethod
    def of(cls, row: t.Export, lake: Lake, s3_endpoint_url: str | None) -> "Destination":
        """The export's destination: `<prefix>/<export id>` in its S3 bucket (through `s3_endpoint_url` when
        given), or under `exports/` in the lake."""
        key = "/".join(p for p in (row.prefix, row.id) if p)
        if row.storage_type == "object":
            options = {"endpoint_url": s3_endpoint_url} if s3_endpoint_url else {}
            fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
            return cls(fs, f"{row.bucket}/{key}", f"s3://{row.bucket}/{key}", local=False)
        rel = f"exports/{key}"
        return cls(lake.fs, f"{lake.root}/{rel}", lake.uri(rel), local=lake.is_local)

    def clear(self) -> None:
        """Delete the bundle folder and everything in it, if it exists."""
        if self.fs.exists(self.folder):
            self.fs.rm(self.folder, recursive=True)

    def publish(self, staged: Path, names: list[str]) -> None:
        """Put the staged files in place, `manifest.json` last (the commit mark)."""
        if self.local:
            Path(self.folder).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, self.folder)  # one rename: the bundle appears whole
            return
        try:
            for name in names:
                self.fs.put_file(str(staged / name), f"{self.folder}/{name}")
        except BaseException:
            self.clear()
            raise


def run_export(catalog: Catalog, lake: Lake, export_id: str, s3_endpoint_url: str | None = None) -> dict[str, Any]:
    """Build and publish the bundle (idempotent: a re-run replaces whatever an interrupted run left); returns
    the export's `eval.export` object, `succeeded`. Raises NotFound (export); any failure marks the export
    `failed` (error code export_failed) and is raised again."""
    with catalog.session() as s:
        row = s.get(t.Export, export_id)
        if row is None:
            raise NotFound("export", export_id)
        if row.status == "succeeded":
            return export_object(row)
        dest = Destination.of(row, lake, s3_endpoint_url)
        content, run_id, system = list(row.content), row.run_id, row.storage_type == "system"
        fmt = row.format or "bundle"
    _set(catalog, export_id, status="running", started_at=now(), error=None)
    try:
        dest.clear()
        parent = Path(dest.folder).parent if dest.local else None
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".tmp-export-", dir=parent) as tmp:
            staged = Path(tmp) / "bundle"
            staged.mkdir()
            files = write_bundle(catalog, lake, run_id, export_id, content, staged, fmt)
            dest.publish(staged, [f["name"] for f in files] + ["manifest.json"])
    except Exception as e:
        _set(catalog, export_id, status="failed", finished_at=now(),
             error={"code": "export_failed", "message": f"{type(e).__name__}: {e}"})
        raise
    if system:
        files = _register_in_lake(catalog, lake, dest, files)
    return _set(catalog, export_id, status="succeeded", finished_at=now(), location=dest.uri, files=files)


def _register_in_lake(catalog: Catalog, lake: Lake, dest: Destination, files: list[dict[str, Any]]
                      ) -> list[dict[str, Any]]:
    """A system-storage bundle's files (and manifest) get file ids, served by the files API."""
    rel = dest.folder[len(lake.root) + 1:]
    manifest = lake.read_bytes(f"{rel}/manifest.json")
    listed = [*files, {"name": "manifest.json", "bytes": len(manifest), "rows": None,
                       "sha256": hashlib.sha256(manifest).hexdigest()}]
    with catalog.session() as s:
        return [f | {"file_id": register_file(s, "export", StoredFile(f"{rel}/{f['name']}", f["bytes"], f["sha256"],
                                                                      f.get("rows")))} for f in listed]


def verify_bundle(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    """Problems with a published bundle, as sentences: a missing manifest or file, or a checksum that differs
    (empty when the bundle is whole)."""
    manifest_path = f"{folder.rstrip('/')}/manifest.json"
    if not fs.exists(manifest_path):
        return ["manifest.json is missing"]
    manifest = json.loads(fs.cat_file(manifest_path))
    problems: list[str] = []
    for f in manifest["files"]:
        path = f"{folder.rstrip('/')}/{f['name']}"
        if not fs.exists(path):
            problems.append(f"{f['name']} is missing")
        elif hashlib.sha256(fs.cat_file(path)).hexdigest() != f["sha256"]:
            problems.append(f"{f['name']}: sha256 differs from the manifest")
    return problems


def bundle_location(catalog: Catalog, lake: Lake, export_id: str, s3_endpoint_url: str | None = None
                    ) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, folder) of an export's bundle. Raises NotFound (export)."""
    with catalog.session() as s:
        row = s.get(t.Export, export_id)
        if row is None:
            raise NotFound("export", export_id)
        dest = Destination.of(row, lake, s3_endpoint_url)
    return dest.fs, dest.folder
