"""The service layer: one function per user action, each doing the domain work and its orchestration
effects (runless materialisations, dynamic partitions, cancelling Dagster runs, queueing for the sensors),
and the reads the front doors serve. The HTTP APIs, the CLI, the demo and the server's worker call these
and nothing below them; every function takes the Runtime (catalog, lake, settings) first.

The names load on first use (PEP 562): a CLI command imports only the part of the domain it needs,
not the whole stack (the full import takes about 2 s)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eval_pipeline.historical.request import ImportResult
    from eval_pipeline.models.registry import Model
    from eval_pipeline.results.overview import headline_score
    from eval_pipeline.runs.records import RunObject
    from eval_pipeline.runs.search import RunPage, RunSummary
    from eval_pipeline.service.backfills import create_backfill, resume_backfill, stale_cells
    from eval_pipeline.service.exports import (
        EXPORT_CONTENT,
        EXPORT_FORMATS,
        create_export,
        execute_export,
        execute_queued_export,
        get_export,
    )
    from eval_pipeline.service.files import file_content, file_uri, get_file
    from eval_pipeline.service.grading import grade_sample, regrade_run
    from eval_pipeline.service.imports import import_historical
    from eval_pipeline.service.registry import (
        add_model,
        aksk_secret,
        authenticate,
        create_key,
        list_models,
        model_options,
        remove_model,
        revoke_key,
        set_eval_mode,
        set_metric_list,
    )
    from eval_pipeline.service.results import list_samples, run_comparisons, run_overview, run_report, ungraded_samples
    from eval_pipeline.service.run_reads import get_run, list_runs, run_artifacts, run_summary, search_runs
    from eval_pipeline.service.runs import (
        cancel_run,
        create_run,
        delete_run,
        execute_queued_run,
        execute_run,
        rerun_failed,
        resume_run,
        retry_run,
        update_run,
    )
    from eval_pipeline.service.schedules import (
        create_schedule,
        delete_schedule,
        deliver_webhooks,
        evaluate_schedules,
        get_schedule,
        list_schedules,
        nightly_entries,
        nightly_file,
        run_outcome,
        schedule_runs,
        schedule_ticks,
        settle_scheduled_runs,
        start_nightly_tick,
        trigger_schedule,
        update_schedule,
        webhook_deliveries,
    )
    from eval_pipeline.service.suites import (
        create_suite,
        create_suite_version,
        delete_suite,
        get_suite,
        get_suite_version,
        imported_metrics,
        list_suites,
        list_tasks,
    )
    from eval_pipeline.stores.keys import Principal
    from eval_pipeline.stores.runtime import Runtime, open_runtime

_WHERE: dict[str, str] = {
    "EXPORT_CONTENT": "eval_pipeline.service.exports",
    "EXPORT_FORMATS": "eval_pipeline.service.exports",
    "ImportResult": "eval_pipeline.historical.request",
    "Model": "eval_pipeline.models.registry",
    "Principal": "eval_pipeline.stores.keys",
    "RunObject": "eval_pipeline.runs.records",
    "RunPage": "eval_pipeline.runs.search",
    "RunSummary": "eval_pipeline.runs.search",
    "add_model": "eval_pipeline.service.registry",
    "stale_cells": "eval_pipeline.service.backfills",
    "create_backfill": "eval_pipeline.service.backfills",
    "resume_backfill": "eval_pipeline.service.backfills",
    "aksk_secret": "eval_pipeline.service.registry",
    "authenticate": "eval_pipeline.service.registry",
    "cancel_run": "eval_pipeline.service.runs",
    "create_export": "eval_pipeline.service.exports",
    "create_key": "eval_pipeline.service.registry",
    "create_run": "eval_pipeline.service.runs",
    "create_schedule": "eval_pipeline.service.schedules",
    "create_suite": "eval_pipeline.service.suites",
    "create_suite_version": "eval_pipeline.service.suites",
    "delete_run": "eval_pipeline.service.runs",
    "delete_schedule": "eval_pipeline.service.schedules",
    "delete_suite": "eval_pipeline.service.suites",
    "deliver_webhooks": "eval_pipeline.service.schedules",
    "evaluate_schedules": "eval_pipeline.service.schedules",
    "execute_export": "eval_pipeline.service.exports",
    "execute_queued_export": "eval_pipeline.service.exports",
    "execute_queued_run": "eval_pipeline.service.runs",
    "execute_run": "eval_pipeline.service.runs",
    "file_content": "eval_pipeline.service.files",
    "file_uri": "eval_pipeline.service.files",
    "get_export": "eval_pipeline.service.exports",
    "get_file": "eval_pipeline.service.files",
    "get_run": "eval_pipeline.service.run_reads",
    "get_schedule": "eval_pipeline.service.schedules",
    "get_suite": "eval_pipeline.service.suites",
    "get_suite_version": "eval_pipeline.service.suites",
    "grade_sample": "eval_pipeline.service.grading",
    "headline_score": "eval_pipeline.results.overview",
    "import_historical": "eval_pipeline.service.imports",
    "imported_metrics": "eval_pipeline.service.suites",
    "list_models": "eval_pipeline.service.registry",
    "list_runs": "eval_pipeline.service.run_reads",
    "list_samples": "eval_pipeline.service.results",
    "list_schedules": "eval_pipeline.service.schedules",
    "list_suites": "eval_pipeline.service.suites",
    "list_tasks": "eval_pipeline.service.suites",
    "model_options": "eval_pipeline.service.registry",
    "nightly_entries": "eval_pipeline.service.schedules",
    "nightly_file": "eval_pipeline.service.schedules",
    "regrade_run": "eval_pipeline.service.grading",
    "remove_model": "eval_pipeline.service.registry",
    "rerun_failed": "eval_pipeline.service.runs",
    "resume_run": "eval_pipeline.service.runs",
    "retry_run": "eval_pipeline.service.runs",
    "revoke_key": "eval_pipeline.service.registry",
    "run_artifacts": "eval_pipeline.service.run_reads",
    "run_comparisons": "eval_pipeline.service.results",
    "run_outcome": "eval_pipeline.service.schedules",
    "run_overview": "eval_pipeline.service.results",
    "run_report": "eval_pipeline.service.results",
    "run_summary": "eval_pipeline.service.run_reads",
    "schedule_runs": "eval_pipeline.service.schedules",
    "schedule_ticks": "eval_pipeline.service.schedules",
    "search_runs": "eval_pipeline.service.run_reads",
    "set_eval_mode": "eval_pipeline.service.registry",
    "set_metric_list": "eval_pipeline.service.registry",
    "settle_scheduled_runs": "eval_pipeline.service.schedules",
    "start_nightly_tick": "eval_pipeline.service.schedules",
    "trigger_schedule": "eval_pipeline.service.schedules",
    "ungraded_samples": "eval_pipeline.service.results",
    "update_run": "eval_pipeline.service.runs",
    "update_schedule": "eval_pipeline.service.schedules",
    "webhook_deliveries": "eval_pipeline.service.schedules",
    "Runtime": "eval_pipeline.stores.runtime",
    "open_runtime": "eval_pipeline.stores.runtime",
}
__all__ = [
    "EXPORT_CONTENT",
    "EXPORT_FORMATS",
    "ImportResult",
    "Model",
    "Principal",
    "RunObject",
    "RunPage",
    "RunSummary",
    "Runtime",
    "add_model",
    "stale_cells",
    "create_backfill",
    "resume_backfill",
    "aksk_secret",
    "authenticate",
    "cancel_run",
    "create_export",
    "create_key",
    "create_run",
    "create_schedule",
    "create_suite",
    "create_suite_version",
    "delete_run",
    "delete_schedule",
    "delete_suite",
    "deliver_webhooks",
    "evaluate_schedules",
    "execute_export",
    "execute_queued_export",
    "execute_queued_run",
    "execute_run",
    "file_content",
    "file_uri",
    "get_export",
    "get_file",
    "get_run",
    "get_schedule",
    "get_suite",
    "get_suite_version",
    "grade_sample",
    "headline_score",
    "import_historical",
    "imported_metrics",
    "list_models",
    "list_runs",
    "list_samples",
    "list_schedules",
    "list_suites",
    "list_tasks",
    "model_options",
    "nightly_entries",
    "nightly_file",
    "open_runtime",
    "regrade_run",
    "remove_model",
    "rerun_failed",
    "resume_run",
    "retry_run",
    "revoke_key",
    "run_artifacts",
    "run_comparisons",
    "run_outcome",
    "run_overview",
    "run_report",
    "run_summary",
    "schedule_runs",
    "schedule_ticks",
    "search_runs",
    "set_eval_mode",
    "set_metric_list",
    "settle_scheduled_runs",
    "start_nightly_tick",
    "trigger_schedule",
    "ungraded_samples",
    "update_run",
    "update_schedule",
    "webhook_deliveries",
]


def __getattr__(name: str) -> Any:
    """A service name, imported from its module on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The service's names."""
    return __all__
