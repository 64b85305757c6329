"""The stack's run launcher: dagster-celery's CeleryRunLauncher (each Dagster run's run worker a Celery task
on the queue `runs`), with a health check that notices a run worker whose Celery worker is gone.

dagster-celery reads a run's health from its task's state alone. A worker killed as a whole (kill -9, a lost
machine) never records an end, so the task stays STARTED and run monitoring would take the run for alive
for ever. Here a STARTED task must also be among the active tasks of the worker that took it, asked over
Celery's control channel; a worker started again under the same name has no such task. A worker that
answers without the task has lost it; one that does not answer MISSES checks in a row (run monitoring's,
30 s apart) is gone, while a single late reply (a busy machine, a Redis reconnect) is not. A run worker
lost either way is reported FAILED, so run monitoring fails the Dagster run, the status sensor fails the
eval run and releases its partitions, and `runs resume` takes them up again. A run without a Celery task
(launched by another launcher) cannot be checked: UNKNOWN, which run monitoring fails.

Terminating a run records it CANCELING, as Dagster's own launcher does, before revoking its task: the
signal (SIGTERM) reaches the run worker's pool process, where Dagster's executor revokes the run's steps
and, seeing CANCELING, records the run canceled; without it the same interruption is recorded as a
failure. Dagster handles the signal only while the run executes: a cancel in the fraction of a second
before (the job loading), or of a run worker that is gone, is closed by run monitoring's cancel timeout,
which records the run canceled."""
from __future__ import annotations

from typing import Any

from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

INSPECT_TIMEOUT = 5.0  # seconds for the worker to list its active tasks (its main process answers, not its pool)
MISSES = 2  # health checks in a row without an answer before the run worker counts as gone


class WatchedCeleryRunLauncher(CeleryRunLauncher):
    """CeleryRunLauncher (same config: broker, backend, include, default_queue, config_source) whose
    check_run_worker_health also asks the worker holding a STARTED run whether it still runs it."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._unanswered: dict[str, int] = {}  # run id -> health checks in a row its worker did not answer

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
        """What dagster-celery says (RUNNING, SUCCESS, FAILED, UNKNOWN), except that a STARTED task is FAILED
        when its worker answers without it among its active tasks, or has not answered within
        INSPECT_TIMEOUT for MISSES checks in a row; UNKNOWN for a run without a Celery task."""
        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        if not task_id:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has no Celery task to check")
        health = super().check_run_worker_health(run)
        if health.status != WorkerStatus.RUNNING:
            self._unanswered.pop(run.run_id, None)
            return health
        result = self.celery.AsyncResult(task_id)
        info = result.info if isinstance(result.info, dict) else {}
        worker = info.get("hostname")
        if not worker:
            return health
        replies = self.celery.control.inspect(destination=[worker], timeout=INSPECT_TIMEOUT, limit=1).active() or {}
        if any(task.get("id") == task_id for task in replies.get(worker, [])):
            self._unanswered.pop(run.run_id, None)
            return health
        if result.state != "STARTED":  # it ended between the two reads: report how
            self._unanswered.pop(run.run_id, None)
            return super().check_run_worker_health(run)
        if worker in replies:
            why = "no longer runs it"
        else:
            self._unanswered[run.run_id] = self._unanswered.get(run.run_id, 0) + 1
            if self._unanswered[run.run_id] < MISSES:
                return health
            why = f"did not answer {MISSES} checks in a row"
        self._unanswered.pop(run.run_id, None)
        return CheckRunHealthResult(WorkerStatus.FAILED,
                                    f"Celery worker {worker}, which took run task {task_id}, {why}")
