"""Backfills and staleness of the model x task grid: which cells are stale, and why."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from eval_pipeline.runs.staleness import stale_cells as _stale_cells
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.runtime import Runtime


def stale_cells(rt: Runtime, *, suite_id: str | None = None, model: str | None = None,
                judge_model: str | None = None, rubric: str | None = None) -> list[dict[str, Any]]:
    """The stale (model, task) cells of one suite (`suite_id`) or of every suite, optionally of one model:
    each with its latest completed result and the reasons (runs/staleness.py). `judge_model` and `rubric`
    name the judge graded with now. Raises NotFound for an unknown suite."""
    if suite_id is not None:
        suite_ids = [suite_id]
    else:
        with rt.catalog.session() as s:
            suite_ids = list(s.scalars(select(t.Suite.id).order_by(t.Suite.created_at, t.Suite.id)))
    return [cell.to_dict() for sid in suite_ids
            for cell in _stale_cells(rt.catalog, sid, model=model, judge_model=judge_model, rubric=rubric)]
