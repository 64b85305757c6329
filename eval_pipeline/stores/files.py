"""Lake files the catalog hands out by id."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from eval_pipeline import ids
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.lake import StoredFile


def register_file(s: Session, purpose: str, stored: StoredFile | None) -> str | None:
    """The id of the `files` row for `stored.path`, added with `purpose` or refreshed (a rewrite keeps its id);
    None when `stored` is None. Flushed in the caller's session `s`."""
    if stored is None:
        return None
    row = s.scalar(select(t.File).where(t.File.path == stored.path))
    if row is None:
        row = t.File(id=ids.new_id("file"), purpose=purpose, path=stored.path, created_at=now(),
                     bytes=stored.bytes, sha256=stored.sha256, rows=stored.rows)
        s.add(row)
    else:
        row.bytes, row.sha256, row.rows = stored.bytes, stored.sha256, stored.rows
    s.flush()
    return row.id
