"""Where a step executes, for its materialisations' metadata: the worker process and the Celery queue it
took the step from (in_process when no Celery worker ran it)."""
from __future__ import annotations

import os
import socket


def placement() -> dict[str, str]:
    """{"worker": "<host>:<pid>", "queue": ...}: the queue is the one the running Celery task was delivered
    through (dagster-celery routes a step to `<queue>.execute_plan`), else in_process."""
    queue = "in_process"
    try:
        from celery import current_task  # deferred: only a Celery worker has a task to ask about
    except ImportError:
        current_task = None
    # current_task is a proxy: false when this process is not running a Celery task
    if current_task and current_task.request.delivery_info:
        routing_key = current_task.request.delivery_info.get("routing_key") or ""
        queue = routing_key.split(".", 1)[0] or os.environ.get("EVAL_PIPELINE_WORKER_QUEUE", "celery")
    return {"worker": f"{socket.gethostname()}:{os.getpid()}", "queue": queue}
