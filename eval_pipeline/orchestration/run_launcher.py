"""The stack's run launcher: dagster-celery's CeleryRunLauncher (each Dagster run's run worker a Celery task
on the queue `runs`), with a health check that notices a run worker whose Celery worker is gone.

dagster-celery reads a run's health from its task's state alone. A worker killed as a whole (kill -9, a lost
machine) never records an end, so the task stays STARTED and run monitoring would take the run for alive
for ever. Here a STARTED task must also be among the active tasks of the worker that took it, asked over
Celery's control channel; a worker started again under the same name has no such task. A run worker lost
this way is reported FAILED, so run monitoring fails the Dagster run, the status sensor fails the eval run
and releases its partitions, and `runs resume` takes them up again.

Terminating a run records it CANCELING, as Dagster's own launcher does, before revoking its task: the
signal (SIGTERM) reaches the run worker's pool process, where Dagster's executor revokes the run's steps
and, seeing CANCELING, records the run canceled; without it the same interruption is recorded as a
failure. A run worker that is gone is marked canceled by run monitoring (cancel_timeout_seconds)."""
from __future__ import annotations

from typing import Any

from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

INSPECT_TIMEOUT = 5.0  # seconds for the worker to list its active tasks (its main process answers, not its pool)


class WatchedCeleryRunLauncher(CeleryRunLauncher):
    """CeleryRunLauncher (same config: broker, backend, include, default_queue, config_source) whose
    check_run_worker_health also asks the worker holding a STARTED run whether it still runs it."""

    def terminate(self, run_id: str) -> bool:
        """Record a started run CANCELING and interrupt its run worker (its Celery task revoked with
        SIGTERM), which revokes the run's steps and records the run canceled. False for an unknown run or
        one without a Celery task."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or DAGSTER_CELERY_TASK_ID_TAG not in run.tags:
            return False
        self._instance.report_run_canceling(run)
        return bool(super().terminate(run_id))

    def check_run_worker_health(self, run: Any) -> CheckRunHealthResult:
        """RUNNING, SUCCESS or FAILED as dagster-celery says, except that a STARTED task its worker no longer
        lists as active (or whose worker does not answer within INSPECT_TIMEOUT) is FAILED."""
        health = super().check_run_worker_health(run)
        if health.status != WorkerStatus.RUNNING:
            return health
        task_id = run.tags[DAGSTER_CELERY_TASK_ID_TAG]
        result = self.celery.AsyncResult(task_id)
        info = result.info if isinstance(result.info, dict) else {}
        worker = info.get("hostname")
        if not worker:
            return health
        replies = self.celery.control.inspect(destination=[worker], timeout=INSPECT_TIMEOUT, limit=1).active() or {}
        if any(task.get("id") == task_id for task in replies.get(worker, [])):
            return health
        if result.state != "STARTED":  # it ended between the two reads: report how
            return super().check_run_worker_health(run)
        why = "did not answer" if worker not in replies else "no longer runs it"
        return CheckRunHealthResult(WorkerStatus.FAILED,
                                    f"Celery worker {worker}, which took run task {task_id}, {why}")
