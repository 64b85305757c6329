"""The server's own worker (`serve --execute`): queued eval runs and export tasks executed one at a time
in this process, as the same Dagster jobs the sensors launch, for a single machine without a Dagster
daemon. Runs and exports are claimed with a conditional update, so a daemon's sensors running beside
it never take the same one twice."""
from __future__ import annotations

import logging
import threading

from eval_pipeline import runs
from eval_pipeline.exports import claim_export, queued_exports
from eval_pipeline.runtime import Runtime, dagster_instance

log = logging.getLogger("eval_pipeline.worker")


class Worker:
    def __init__(self, rt: Runtime, interval: float = 2.0):
        self.rt, self.interval = rt, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="eval-pipeline-worker", daemon=True)

    def start(self) -> "Worker":
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
        """Execute the oldest queued run, else the oldest queued export; False when there was none."""
        from eval_pipeline.definitions import defs
        from eval_pipeline.orchestration import EXPORT_JOB, GENERATION_JOB, QUIET, execute_export, execute_in_process

        catalog, lake = self.rt.catalog, self.rt.lake
        for run in runs.queued_runs(catalog):
            if runs.mark_started(catalog, run["id"]):
                log.info("executing eval run %s", run["id"])
                execute_in_process(dagster_instance(self.rt), catalog, lake, run["id"],
                                   defs.resolve_job_def(GENERATION_JOB), run_config=QUIET)
                return True
        for export_id in queued_exports(catalog):
            if claim_export(catalog, export_id):
                log.info("executing export %s", export_id)
                execute_export(dagster_instance(self.rt), catalog, export_id, defs.resolve_job_def(EXPORT_JOB), QUIET)
                return True
        return False
