"""The code location's executor: Dagster's default on one machine (each run's steps in its own process or
subprocesses); in a deployment whose settings name a Celery config (`eval-pipeline stack up` writes one,
deploy/celery.yaml is the production template), dagster-celery's executor, which sends each step to a
Celery queue: `generations` to `gpu` (its op tag), every other step to the config's default queue; on
Kubernetes (EVAL_PIPELINE_K8S_EXECUTOR_CONFIG, deploy/k8s/executor.yaml), dagster-k8s's k8s_job_executor,
each step in a pod of its own (`generations` asking for one nvidia.com/gpu in its op tags).

One thing is added to dagster-celery's executor: a watch on each started step's worker. dagster-celery
waits for a step's result without end; a worker killed mid-step (kill -9, a lost machine) never sends one,
and the run would stay STARTED for ever while its run worker, alive, passes run monitoring. The watch
pings the worker that took the step (Celery's control channel) and fails the step when it has not answered
MISSES pings in a row, so the run fails, the status sensor fails the eval run and releases its partitions,
and `runs resume` takes them up again, losing at most the chunk in flight."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from eval_pipeline.errors import InvalidInput
from eval_pipeline.stores.settings import Settings

PROBE_SECONDS = 10.0  # between pings of a started step's worker
MISSES = 3  # unanswered pings in a row before the step counts as lost
PING_TIMEOUT = 2.0


class WorkerLost(RuntimeError):
    """The Celery worker running a step stopped answering: the step will never report its result."""


class WatchedResult:
    """A step's Celery AsyncResult, as dagster-celery's loop uses it (ready, get, revoke), that also turns
    ready, raising WorkerLost from get(), when the worker running the step is gone."""

    def __init__(self, result: Any, app: Any, step_key: str):
        self.result, self.app, self.step_key = result, app, step_key
        self._next_probe = time.monotonic() + PROBE_SECONDS
        self._missed = 0
        self._lost: str | None = None

    def ready(self) -> bool:
        """True once the step's result is in, or its worker is lost."""
        if self._lost or self.result.ready():
            return True
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + PROBE_SECONDS
        info = self.result.info if self.result.state == "STARTED" else None
        worker = info.get("hostname") if isinstance(info, dict) else None
        if not worker:  # still queued: no worker holds it (workers take a task only when free)
            self._missed = 0
            return False
        if self.app.control.ping(destination=[worker], timeout=PING_TIMEOUT):
            self._missed = 0
            return False
        self._missed += 1
        if self._missed >= MISSES:
            self._lost = worker
        return self._lost is not None

    def get(self) -> Any:
        """The step's events; WorkerLost when its worker is gone."""
        if self._lost:
            raise WorkerLost(f"Celery worker {self._lost} stopped answering while it ran step {self.step_key} "
                             f"({MISSES} pings, {PROBE_SECONDS:.0f} s apart, unanswered)")
        # the run worker is itself a Celery task (dagster-celery's run launcher): waiting on a step it
        # started is what it is for, so Celery's guard against tasks waiting on tasks is lifted
        return self.result.get(disable_sync_subtasks=False)

    def revoke(self) -> None:
        """Revoke the task (the run is being terminated)."""
        self.result.revoke()


def _submit_watched(app: Any, plan_context: Any, step: Any, queue: str, priority: int,
                    known_state: Any) -> WatchedResult:
    from dagster_celery.executor import _submit_task

    return WatchedResult(_submit_task(app, plan_context, step, queue, priority, known_state), app, step.key)


def _watched_executor() -> dg.ExecutorDefinition:
    # deferred: celery and kombu are only imported where a deployment executes on them
    from dagster._core.execution.retries import RetryMode
    from dagster_celery.core_execution_loop import core_celery_execution_loop
    from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor

    class WatchedCeleryExecutor(CeleryExecutor):  # type: ignore[misc]
        def execute(self, plan_context: Any, execution_plan: Any) -> Any:
            return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=_submit_watched)

    @dg.executor(name="celery", config_schema=CELERY_CONFIG, requirements=dg.multiple_process_executor_requirements())
    def celery_watched_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
        """dagster-celery's executor with the same config, each started step's worker watched."""
        config = init_context.executor_config
        return WatchedCeleryExecutor(broker=config.get("broker"), backend=config.get("backend"),
                                     include=config.get("include"), config_source=config.get("config_source"),
                                     retries=RetryMode.from_config(config["retries"]))

    return celery_watched_executor


def executor_config(path: Path, variable: str, required: str | None = None) -> dict[str, Any]:
    """The executor config block (`execution.config`) of a YAML file (as `dagster-celery worker start -y`
    reads it). Raises InvalidInput naming `variable` and the file when it has none, or lacks `required`."""
    try:
        config = (yaml.safe_load(path.read_text()) or {}).get("execution", {}).get("config")
    except (OSError, yaml.YAMLError, AttributeError) as e:
        raise InvalidInput(variable, f"cannot read {path}: {e}") from e
    if not isinstance(config, dict) or (required and required not in config):
        raise InvalidInput(variable, f"{path} has no execution.config{'.' + required if required else ''}")
    return config


def celery_config(path: Path) -> dict[str, Any]:
    """The Celery executor's config block of a dagster-celery YAML file (see executor_config)."""
    return executor_config(path, "EVAL_PIPELINE_CELERY_CONFIG", "broker")


def deployment_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """The Celery executor (watched) configured from the settings' Celery file, or dagster-k8s's
    k8s_job_executor from its file; None (Dagster's default) when the settings name neither."""
    if settings.celery_config is not None:
        return _watched_executor().configured(celery_config(settings.celery_config), name="celery")
    if settings.k8s_executor_config is not None:
        from dagster_k8s import k8s_job_executor  # deferred: the kubernetes client only matters on a cluster

        config = executor_config(settings.k8s_executor_config, "EVAL_PIPELINE_K8S_EXECUTOR_CONFIG")
        return k8s_job_executor.configured(config, name="k8s")
    return None
