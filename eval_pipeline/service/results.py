"""Reads of a run's results: the overview, comparisons, samples with their scores, the report, and
the samples still waiting for a person's grade."""
from __future__ import annotations

from typing import Any

from eval_pipeline import runs
from eval_pipeline.grading.human import ungraded
from eval_pipeline.results.comparisons import run_comparisons as _run_comparisons
from eval_pipeline.results.overview import run_overview as _run_overview
from eval_pipeline.results.report import html_page, markdown, report_samples
from eval_pipeline.results.samples import list_samples as _list_samples
from eval_pipeline.schedules.outcomes import run_outcome
from eval_pipeline.stores.runtime import Runtime


def run_overview(rt: Runtime, run_id: str, *, metric: str = "reward", org_id: str | None = None) -> dict[str, Any]:
    """`eval.run.overview`: one score, the sample counts and tokens; for a run a schedule made, its
    `regressions` against the schedule's previous run and the baseline once it is settled (else null).
    Raises NotFound."""
    outcome = run_outcome(rt.catalog, run_id)
    return {**_run_overview(rt.catalog, rt.lake, run_id, metric=metric, org_id=org_id),
            "regressions": outcome["regressions"] if outcome else None}


def run_comparisons(rt: Runtime, run_id: str) -> dict[str, Any]:
    """Paired differences between the run's models per task, and deltas against imported history."""
    return _run_comparisons(rt.catalog, rt.lake, run_id)


def list_samples(rt: Runtime, run_id: str, **filters: Any) -> tuple[list[dict[str, Any]], bool]:
    """(samples, has_more): a page of the run's generated samples with their scores; `filters` as
    results.samples.list_samples takes them. Raises NotFound, InvalidInput naming the filter."""
    return _list_samples(rt.catalog, rt.lake, run_id, **filters)


def ungraded_samples(rt: Runtime, run_id: str) -> list[dict[str, Any]]:
    """The samples of the run's manual tasks that still wait for a person's grade."""
    return ungraded(rt.catalog, rt.lake, run_id)


def run_report(rt: Runtime, run_id: str, *, html: bool = False) -> str:
    """The run's report: Markdown (metrics with error bars, paired differences, deltas against history, a
    scheduled run's regressions), or the HTML page with its charts and sample browser. Raises NotFound."""
    run, comparisons = runs.get_run(rt.catalog, run_id), _run_comparisons(rt.catalog, rt.lake, run_id)
    outcome = run_outcome(rt.catalog, run_id)
    scheduled = outcome["regressions"] if outcome else None
    if html:
        return html_page(run, comparisons, scheduled, report_samples(rt.catalog, rt.lake, run_id))
    return markdown(run, comparisons, scheduled)

