"""Files the catalog hands out by id (run reports, task inputs, system-storage export bundles), as
MKA1's files API shows them, to the org that owns what they belong to."""
from __future__ import annotations

import posixpath
from typing import Any, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from eval_pipeline.errors import NotFound
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake

MEDIA_TYPES = {".html": "text/html", ".json": "application/json", ".jsonl": "application/jsonl",
               ".md": "text/markdown", ".csv": "text/csv", ".txt": "text/plain"}
PARQUET = "application/vnd.apache.parquet"


def _owned(s: Session, f: t.File, org_id: str | None) -> bool:
    if org_id is None:
        return True
    if f.purpose == "run_report":
        run = s.get(t.Run, f.path.split("/")[1])
        return run is not None and run.org_id == org_id and f.id in (run.artifact_file_ids or [])
    if f.purpose == "export":  # exports/[prefix/]<export id>/<name> (format lm-eval: <model folder>/<name>)
        export = _export_of(s, f.path)
        run = s.get(t.Run, export.run_id) if export is not None else None
        return run is not None and run.org_id == org_id
    if f.purpose == "task_inputs":  # readable by an org with a suite version pinning it
        return s.scalar(select(t.Suite.id)
                        .join(t.SuiteVersion, t.SuiteVersion.suite_id == t.Suite.id)
                        .join(t.SuiteVersionTask, t.SuiteVersionTask.suite_version_id == t.SuiteVersion.id)
                        .join(t.TaskVersion, (t.TaskVersion.task_id == t.SuiteVersionTask.task_id)
                              & (t.TaskVersion.version == t.SuiteVersionTask.task_version))
                        .where(t.TaskVersion.inputs_file_id == f.id, t.Suite.org_id == org_id).limit(1)) is not None
    return False


def _export_of(s: Session, path: str) -> t.Export | None:
    """The export whose bundle folder holds `path`: the nearest folder named after an export whose own
    folder (exports/[prefix/]<id>) the path is in."""
    parts = path.split("/")[:-1]
    for i in range(len(parts) - 1, 0, -1):
        export = s.get(t.Export, parts[i])
        if export is not None and "/".join(parts[:i + 1]) == "/".join(
                p for p in ("exports", export.prefix, export.id) if p):
            return export
    return None


def _file(s: Session, file_id: str, org_id: str | None) -> t.File:
    f = s.get(t.File, file_id)
    if f is None or not _owned(s, f, org_id):
        raise NotFound("file", file_id)
    return f


def file_object(f: t.File) -> dict[str, Any]:
    """The file as MKA1's files API shows it: id, object "file", bytes, created_at (Unix seconds), filename,
    purpose "evals", status "processed", expires_at None, and its sha256."""
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": f.created_at,
            "filename": posixpath.basename(f.path), "purpose": "evals", "status": "processed",
            "expires_at": None, "sha256": f.sha256}


def get_file(catalog: Catalog, file_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """The file object (file_object) of `file_id`. Raises NotFound, also when `org_id` (when given) does not own
    what the file belongs to."""
    with catalog.session() as s:
        return file_object(_file(s, file_id, org_id))


def file_path(catalog: Catalog, file_id: str) -> str:
    """The file's path in the lake, whoever owns it. Raises NotFound."""
    with catalog.session() as s:
        return _file(s, file_id, None).path


def file_content(catalog: Catalog, lake: Lake, file_id: str, *, org_id: str | None = None
                 ) -> tuple[Iterator[bytes], str, str]:
    """(the bytes in 1 MiB pieces, media type, file name): a large bundle is never held in memory.

    Raises NotFound when there is no such file, `org_id` (when given) does not own it, or its lake file is gone.
    """
    with catalog.session() as s:
        f = _file(s, file_id, org_id)
        path = f.path
    if not lake.exists(path):
        raise NotFound("file content", file_id, "its lake file is gone")
    ext = posixpath.splitext(path)[1]
    media = MEDIA_TYPES.get(ext, PARQUET if ext == ".parquet" else "application/octet-stream")

    def pieces() -> Iterator[bytes]:
        with lake.fs.open(f"{lake.root}/{path}", "rb") as fh:
            while piece := fh.read(1 << 20):
                yield piece

    return pieces(), media, posixpath.basename(path)
