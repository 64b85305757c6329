"""Rerun a finished run's failed samples: the chunks holding failures are set aside, their partitions go
back to the queue, and generation then answers only the failed requests (the rest of those chunks is
taken from the set-aside files); grades, metrics and the report are made again as the run completes."""
from __future__ import annotations

import posixpath

from sqlalchemy import select

from eval_pipeline.errors import Conflict
from eval_pipeline.generation.cache import superseded_dir
from eval_pipeline.runs.lifecycle import set_chunks
from eval_pipeline.runs.records import RunObject, run_object, run_row
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.lake import Lake


def rerun_failed(catalog: Catalog, lake: Lake, run_id: str, *, org_id: str | None = None) -> RunObject:
    """Queue a completed or failed run again (one more attempt) with only its failed samples to answer;
    returns the `eval.run` object. Raises NotFound (also for a run of another org), Conflict when the run is
    not completed or failed, or has no failed samples."""
    with catalog.session() as s:
        run = run_row(s, run_id, org_id)
        if run.status not in ("completed", "failed"):
            raise Conflict(f"run {run_id} is {run.status}; only a completed or failed run reruns its failures")
        parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id,
                                                       t.RunPartition.failed > 0)).all()
        if not parts:
            raise Conflict(f"run {run_id} has no failed samples")
        stamp = now()
        for part in parts:
            keep = []
            for chunk in part.chunks:
                if not chunk["failed"]:
                    keep.append(chunk)
                    continue
                # set aside before the catalog forgets it: a crash in between leaves a missing chunk,
                # which generation redoes from the set-aside file anyway
                if lake.exists(chunk["path"]):
                    folder, name = posixpath.split(chunk["path"])
                    target = f"{superseded_dir(folder)}/{name.removesuffix('.parquet')}.{stamp}.parquet"
                    lake.fs.makedirs(f"{lake.root}/{superseded_dir(folder)}", exist_ok=True)
                    lake.fs.mv(f"{lake.root}/{chunk['path']}", f"{lake.root}/{target}")
            set_chunks(part, keep)
            part.status = "pending"
        run.status, run.error, run.failed_at, run.completed_at = "queued", None, None, None
        run.attempt += 1
        return run_object(s, run)
