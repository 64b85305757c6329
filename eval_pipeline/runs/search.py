"""Finding runs by a fuzzy key (name or id) or an exact model name, a page at a time, in creation order:
the listing Qianfan's DescribeEvalTasks serves. One indexed query per page; on SQLite a trigram table
(migration 0011) finds the candidates of a selective key first."""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from eval_pipeline.errors import InvalidInput
from eval_pipeline.runs.records import run_row
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t

TRIGRAM_CAP = 2000  # more candidates than this: scanning the listing index in order is cheaper


@dataclass(frozen=True)
class RunSummary:
    """A run as a listing shows it; `created_at` in Unix seconds."""

    id: str
    name: str | None
    description: str | None
    eval_type: str
    eval_mode: str
    created_at: int


@dataclass(frozen=True)
class RunPage:
    """One page of a listing: its runs, and the id the next page starts at ("" on the last page)."""

    runs: list[RunSummary]
    next_marker: str


def _summary(run: t.Run) -> RunSummary:
    return RunSummary(run.id, run.name, run.description, run.eval_type, run.eval_mode, run.created_at)


def run_summary(catalog: Catalog, run_id: str, *, org_id: str | None = None) -> RunSummary:
    """The run's summary; NotFound when it does not exist or belongs to another org than `org_id`."""
    with catalog.session() as s:
        return _summary(run_row(s, run_id, org_id))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _trigram_candidates(key_filter: str, union: str, limit: str = "") -> sa.TextualSelect:
    """Run ids from SQLite's trigram table. FTS5 only uses its index for a LIKE without ESCAPE, so the
    filter goes in unescaped: a `%` or `_` in it can only widen the candidates, and the escaped LIKEs of
    the listing keep its answer exact."""
    return (sa.text(f"SELECT id FROM eval_runs_search WHERE search_text LIKE :fuzzy "
                    f"{union} SELECT id FROM eval_runs_search WHERE model_list LIKE :model {limit}")
            .bindparams(fuzzy=f"%{key_filter.lower()}%", model=f"%|{key_filter}|%")
            .columns(sa.column("id", sa.String)))


def _few_trigram_candidates(catalog: Catalog, s: Session, key_filter: str) -> bool:
    """Whether the trigram table exists, can serve this filter (3+ characters) and finds few runs."""
    if len(key_filter) < 3 or not catalog.has_table("eval_runs_search"):
        return False
    probe = _trigram_candidates(key_filter, "UNION ALL", f"LIMIT {TRIGRAM_CAP + 1}").subquery("probe")
    return (s.scalar(select(sa.func.count()).select_from(probe)) or 0) <= TRIGRAM_CAP


def search_runs(catalog: Catalog, *, org_id: str, eval_type: str, key_filter: str = "", marker: str = "",
                reverse: bool = False, limit: int = 10) -> RunPage:
    """Up to `limit` runs of the org and eval type (manual or auto) whose name or id contains `key_filter`
    (case-insensitive) or whose models include it exactly, from the run `marker` on (inclusive), oldest
    first (newest first when `reverse`). Raises InvalidInput for a marker that is not such a run."""
    with catalog.session() as s:
        q = select(t.Run)
        if key_filter and _few_trigram_candidates(catalog, s, key_filter):
            found = _trigram_candidates(key_filter, "UNION").subquery("found")
            q = select(t.Run).select_from(found).join(t.Run, t.Run.id == found.c.id)  # the few found first
        q = q.where(t.Run.org_id == org_id, t.Run.eval_type == eval_type)
        if key_filter:
            # fuzzy on name and id, exact on a model: two plain LIKEs on columns runs keep for this
            q = q.where(t.Run.search_text.like(f"%{_escape_like(key_filter.lower())}%", escape="\\")
                        | t.Run.model_list.like(f"%|{_escape_like(key_filter)}|%", escape="\\"))
        if marker:
            anchor = s.get(t.Run, marker)
            if anchor is None or anchor.org_id != org_id:
                raise InvalidInput("marker", "is not a position of this listing")
            position = tuple_(t.Run.created_ns, t.Run.id)
            q = q.where(position <= (anchor.created_ns, anchor.id) if reverse
                        else position >= (anchor.created_ns, anchor.id))
        order = (t.Run.created_ns.desc(), t.Run.id.desc()) if reverse else (t.Run.created_ns, t.Run.id)
        rows = list(s.scalars(q.order_by(*order).limit(limit + 1)))
        return RunPage([_summary(r) for r in rows[:limit]], rows[limit].id if len(rows) > limit else "")
