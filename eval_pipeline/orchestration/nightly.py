"""The deployment's nightly evals (schedules/nightly.py's YAML file) as Dagster schedules: each entry is a
`dg.ScheduleDefinition` on the generation job, listed with its next tick on the UI's Automation page.
A tick makes one eval run per suite (once per tick, whatever Dagster re-evaluates) and requests that
run's Dagster runs."""
from __future__ import annotations

import dagster as dg

from eval_pipeline import service
from eval_pipeline.orchestration.jobs import generation_job
from eval_pipeline.schedules.nightly import NightlyEntry
from eval_pipeline.stores.runtime import Runtime
from eval_pipeline.stores.settings import Settings
from resources import CatalogResource, LakeResource


def _schedule(entry: NightlyEntry) -> dg.ScheduleDefinition:
    @dg.schedule(name=entry.name, cron_schedule=entry.cron, execution_timezone=entry.timezone, job=generation_job,
                 default_status=dg.DefaultScheduleStatus.RUNNING, tags={"eval_pipeline/nightly": entry.name},
                 description=(f"Nightly eval of {', '.join(entry.models)} on {', '.join(entry.suites)} (org "
                              f"{entry.org}): one eval run per suite each tick, from the deployment's nightly file."))
    def evaluate(context: dg.ScheduleEvaluationContext, catalog: CatalogResource,
                 lake: LakeResource) -> list[dg.RunRequest]:
        tick_at = int(context.scheduled_execution_time.timestamp())
        rt = Runtime(Settings.from_env(), catalog.catalog, lake.lake)
        block_runs, errors = service.start_nightly_tick(rt, context.instance, entry, tick_at)
        for error in errors:
            context.log.warning(f"nightly {entry.name}: not run on {error}")
        return [dg.RunRequest(run_key=br.run_key, tags=br.tags) for br in block_runs]

    return evaluate


def nightly_schedules() -> list[dg.ScheduleDefinition]:
    """One schedule per entry of the deployment's nightly file (none when there is no file). A file with
    an error fails the code location's load with the error naming the file and entry."""
    settings = Settings.from_env()
    return [_schedule(entry) for entry in service.nightly_entries(service.nightly_file(settings))]
