"""A local deployment ("stack"): Dagster's webserver, daemon and code server, Celery workers and the API
server as processes of one home, on PostgreSQL and Redis (`eval-pipeline stack up | down | status`)."""
from eval_pipeline.deployment.layout import StackLayout, stack_layout
from eval_pipeline.deployment.processes import stack_down, stack_status, stack_up

__all__ = ["StackLayout", "stack_down", "stack_layout", "stack_status", "stack_up"]
