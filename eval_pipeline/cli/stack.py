"""CLI group `stack`: a local deployment of the whole service in one home (deploy/stack wraps it)."""
from __future__ import annotations

import click

from eval_pipeline.cli.common import _emit, front_door
from eval_pipeline.deployment import stack_down, stack_layout, stack_status, stack_up


@click.group("stack")
def stack_group() -> None:
    """Start, stop or inspect a deployment: Dagster's webserver, daemon and code server, Celery workers
    (queues gpu and default) and the API server, on PostgreSQL and Redis, for EVAL_PIPELINE_HOME."""


@stack_group.command("up")
@front_door
def up() -> None:
    """Start the stack (or its processes that died); prints its status as JSON."""
    _emit(stack_up(stack_layout(), log=lambda m: click.echo(m, err=True)))


@stack_group.command("down")
@front_door
def down() -> None:
    """Stop every process of the stack, and nothing else; its databases and files stay."""
    _emit(stack_down(stack_layout()))


@stack_group.command("status")
@front_door
def status() -> None:
    """Each process's name, pid and whether it is alive, and the API's and the UI's URLs, as JSON."""
    _emit(stack_status(stack_layout()))
