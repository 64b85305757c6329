"""Helpers every CLI command uses: JSON output, error mapping to exit codes, loading the jobs."""
from __future__ import annotations

import functools
import json
import sys
from typing import TYPE_CHECKING

import click

from eval_pipeline.errors import INPUT_ERRORS, EvalPipelineError

if TYPE_CHECKING:  # dagster takes a second to import; commands that execute nothing never need it
    import dagster as dg


def _emit(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _fail(err: Exception, code: int) -> None:
    kind = getattr(err, "code", "internal_error")
    click.echo(json.dumps({"error": {"code": kind, "message": str(err)}}), err=True)
    sys.exit(code)


def front_door(fn):
    """Map the core's errors to exit codes: bad input 2, anything else 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except INPUT_ERRORS as e:
            _fail(e, 2)
        except EvalPipelineError as e:
            _fail(e, 1)

    return wrapper


def _metadata(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not K=V", param_hint="--metadata")
        k, v = pair.split("=", 1)
        out[k] = v
    return out


def job(name: str) -> dg.JobDefinition:
    """A job of the one Definitions, resolved, to execute here (`--wait`, exports without --queue)."""
    from eval_pipeline.orchestration.definitions import defs  # deferred: it loads every asset module

    return defs.resolve_job_def(name)
