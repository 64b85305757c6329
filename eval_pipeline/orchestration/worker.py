"""The server's own worker (`serve --execute`): queued eval runs and export tasks executed one at a time
in this process, as the same Dagster jobs the sensors launch, for a single machine without a Dagster
daemon; every 10 s it does the schedule sensors' work too (due ticks, outcomes of ended scheduled runs,
webhook deliveries). Runs, exports, ticks and deliveries are claimed with conditional updates or unique
keys, so a daemon's sensors running beside it never take the same one twice."""
from __future__ import annotations

import logging
import threading
import time

from eval_pipeline import service
from eval_pipeline.orchestration.job_names import EXPORT_JOB, GENERATION_JOB

log = logging.getLogger("eval_pipeline.worker")
SCHEDULE_INTERVAL = 10.0  # seconds between schedule evaluations, as the daemon's sensors


class Worker:
    """A thread that executes queued eval runs and exports, polling every `interval` seconds."""

    def __init__(self, rt: service.Runtime, interval: float = 2.0):
        self.rt, self.interval = rt, interval
        self._schedules_due = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="eval-pipeline-worker", daemon=True)

    def start(self) -> "Worker":
        """Start polling; returns the worker."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work. A Dagster run under way finishes its current chunk first only if it ends
        within `timeout`; otherwise the process exit leaves it in_progress, for `runs resume`."""
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Exception:  # noqa: BLE001  (the worker outlives any one failure; the run records it)
                log.exception("worker step failed")
                busy = False
            if not busy:
                self._stop.wait(self.interval)

    def step(self) -> bool:
        """Schedules first, at most every SCHEDULE_INTERVAL seconds (due ticks queue their runs; ended
        scheduled runs are compared and their webhook events sent), then execute the oldest queued run,
        else the oldest queued export; False when there was no run or export."""
        from eval_pipeline.orchestration.definitions import defs  # deferred: it loads every asset module

        if time.monotonic() >= self._schedules_due:
            self._schedules_due = time.monotonic() + SCHEDULE_INTERVAL
            self._schedule_step()
        run_id = service.execute_queued_run(self.rt, defs.resolve_job_def(GENERATION_JOB))
        if run_id is not None:
            log.info("executed eval run %s", run_id)
            return True
        export_id = service.execute_queued_export(self.rt, defs.resolve_job_def(EXPORT_JOB))
        if export_id is not None:
            log.info("executed export %s", export_id)
            return True
        return False

    def _schedule_step(self) -> None:
        """The schedule sensors' work, here; a failure is logged and never stops the runs and exports."""
        try:
            for tick in service.evaluate_schedules(self.rt):
                log.info("schedule %s %s at %s: %s", tick.schedule_id, tick.kind, tick.tick_at, tick.status)
            for outcome in service.settle_scheduled_runs(self.rt):
                log.info("scheduled run %s: %d regressions", outcome["run_id"], len(outcome["regressions"]))
            service.deliver_webhooks(self.rt)
        except Exception:  # noqa: BLE001  (a schedule's failure must not stop the runs and exports)
            log.exception("schedule work failed")
