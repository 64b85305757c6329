"""Sensors: queued eval runs become Dagster runs; finished Dagster runs move their eval run on; schedules
tick; scheduled runs that ended are compared and their webhook events sent."""
import dagster as dg

from eval_pipeline import runs, service
from eval_pipeline.exports.tasks import claim_export, queued_exports
from eval_pipeline.orchestration.job_names import EXPORT_JOB, GENERATION_JOB
from eval_pipeline.service.launching import after_dagster_run, eval_run_of, plan_block_runs
from eval_pipeline.service.partitions import export_partitions_def, model_partitions_def, task_partitions_def
from eval_pipeline.stores.runtime import Runtime
from eval_pipeline.stores.settings import Settings
from resources import CatalogResource, LakeResource


@dg.sensor(job_name=GENERATION_JOB, minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING)
def queued_runs(context: dg.SensorEvaluationContext, catalog: CatalogResource,
                lake: LakeResource) -> dg.SensorResult:
    """Each queued eval run: add its model and task partitions, request one Dagster run per model and
    contiguous block of tasks, and mark it in_progress."""
    order = list(context.instance.get_dynamic_partitions(task_partitions_def.name))
    known_models = set(context.instance.get_dynamic_partitions(model_partitions_def.name))
    new_models: list[str] = []
    new_tasks: list[str] = []
    requests = []
    for run in runs.queued_runs(catalog.catalog):
        if not runs.mark_started(catalog.catalog, run["id"]):
            continue  # taken meanwhile (a server's --execute worker)
        block_runs, model_keys, task_keys = plan_block_runs(catalog.catalog, run["id"], order, lake.lake)
        for key in sorted(model_keys - known_models - set(new_models)):
            new_models.append(key)
        for br in block_runs:
            for key in br.task_keys:
                if key not in order:
                    order.append(key)
                    new_tasks.append(key)
        requests += [dg.RunRequest(run_key=br.run_key, tags=br.tags) for br in block_runs]
    partition_requests = []
    if new_models:
        partition_requests.append(model_partitions_def.build_add_request(new_models))
    if new_tasks:
        partition_requests.append(task_partitions_def.build_add_request(new_tasks))
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=partition_requests)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, default_status=dg.DefaultSensorStatus.RUNNING)
def generation_succeeded(context: dg.RunStatusSensorContext, catalog: CatalogResource, lake: LakeResource) -> None:
    """A Dagster run of an eval run succeeded: the eval run completes when its last partition is done."""
    run_id = eval_run_of(catalog.catalog, context.dagster_run)
    if run_id:
        after_dagster_run(catalog.catalog, lake.lake, run_id, True, dagster_run_id=context.dagster_run.run_id)


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING)
def generation_failed(context: dg.RunFailureSensorContext, catalog: CatalogResource, lake: LakeResource) -> None:
    """A Dagster run of an eval run failed (a step raised, a blocking check failed, or run monitoring
    found its worker dead): the eval run fails, and partitions left running are released."""
    run_id = eval_run_of(catalog.catalog, context.dagster_run)
    if run_id:
        message = _failure_message(context.failure_event)
        after_dagster_run(catalog.catalog, lake.lake, run_id, False, message,
                          dagster_run_id=context.dagster_run.run_id)


def _failure_message(event: dg.DagsterEvent | None) -> str:
    """The run failure's message and, when the run failed on an error (a lost worker, a step that
    raised), that error's own message: the first names the run, the second says why."""
    if event is None:
        return ""
    error = getattr(event.event_specific_data, "error", None)
    cause = error.message.strip() if error is not None and error.message else ""
    return f"{event.message or ''} {cause}".strip()[:2000]


@dg.sensor(job_name=EXPORT_JOB, minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING)
def queued_export_tasks(context: dg.SensorEvaluationContext, catalog: CatalogResource) -> dg.SensorResult:
    """Each queued export task: its partition of export_bundles, materialised by one Dagster run (the
    run key is the export id, so a task is launched once)."""
    # claimed here (queued -> running), so a server's --execute worker beside the daemon cannot take it too
    pending = [e for e in queued_exports(catalog.catalog) if claim_export(catalog.catalog, e)]
    known = set(context.instance.get_dynamic_partitions(export_partitions_def.name))
    new = [e for e in pending if e not in known]
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=e, partition_key=e) for e in pending],
                           dynamic_partitions_requests=[export_partitions_def.build_add_request(new)] if new else [])


def _runtime(catalog: CatalogResource, lake: LakeResource) -> Runtime:
    return Runtime(Settings.from_env(), catalog.catalog, lake.lake)


@dg.sensor(minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING)
def schedule_ticks(context: dg.SensorEvaluationContext, catalog: CatalogResource,
                   lake: LakeResource) -> dg.SkipReason:
    """The API's and CLI's schedules: each due tick makes its eval run (queued for `queued_runs`), or is
    skipped or buffered under its overlap policy; at most one run per tick (schedules/ticks.py)."""
    results = service.evaluate_schedules(_runtime(catalog, lake))
    for r in results:
        context.log.info(f"schedule {r.schedule_id} {r.kind} at {r.tick_at}: {r.status}"
                         + (f" run {r.run_id}" if r.run_id else "") + (f" ({r.reason})" if r.reason else ""))
    made = sum(r.status == "created" for r in results)
    return dg.SkipReason(f"{len(results)} ticks, {made} eval runs queued" if results else "no tick due")


@dg.sensor(minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING)
def scheduled_run_outcomes(context: dg.SensorEvaluationContext, catalog: CatalogResource,
                           lake: LakeResource) -> dg.SkipReason:
    """Scheduled runs that ended: compared with the schedule's previous run and the baseline, regressions
    recorded, webhook events queued; then every due webhook event sent (one attempt each, retried later
    with backoff)."""
    rt = _runtime(catalog, lake)
    settled = service.settle_scheduled_runs(rt)
    for o in settled:
        context.log.info(f"run {o['run_id']} {o['status']}: {len(o['regressions'])} regressions in "
                         f"{o['comparisons']} comparisons; events {o['events']}")
    sent = service.deliver_webhooks(rt)
    for d in sent:  # the URL's secret is never logged: only ids, codes and errors
        context.log.info(f"webhook {d['delivery_id']} attempt {d['attempt']}: {d['status_code'] or d['error']}"
                         f" -> {d['status']}")
    return dg.SkipReason(f"{len(settled)} runs settled, {len(sent)} webhook attempts")
