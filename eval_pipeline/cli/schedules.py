"""CLI group `schedules`: MKA1's seven schedule operations (create, list, get, update, delete, trigger,
runs), each schedule's ticks and webhook deliveries, and `tick`, one evaluation of the schedules here
(what the daemon's sensors do every 10 s)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from eval_pipeline import service
from eval_pipeline.cli.common import _emit, _metadata, front_door, job
from eval_pipeline.errors import InvalidInput
from eval_pipeline.orchestration.job_names import GENERATION_JOB


@click.group("schedules")
def schedules_group() -> None:
    """Schedules of eval runs: cron or interval, overlap policy, signed webhooks, regression alerts."""


def _body_file(path: str | None) -> dict:
    if not path:
        return {}
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InvalidInput("--body", f"{path}: {e}") from None
    if not isinstance(body, dict):
        raise InvalidInput("--body", f"{path}: must hold a JSON object")
    return body


def _secret(env_name: str | None) -> str | None:
    """The webhook secret from the environment variable named (never from an argument: argv is visible)."""
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise InvalidInput("--webhook-secret-env", f"environment variable {env_name} is not set")
    return value


def _server() -> tuple[set[str], int]:
    """Where this deployment's API answers, as far as the CLI knows: loopback on EVAL_PIPELINE_API_PORT
    (default 8000, `serve`'s), so a webhook cannot point back at it from here either."""
    return {"127.0.0.1", "localhost"}, int(os.environ.get("EVAL_PIPELINE_API_PORT") or 8000)


def _schedule_options(fn):
    options = [
        click.option("--body", "body_file", help="A JSON file with the body in the API's shape (flags override)."),
        click.option("--name"),
        click.option("--description"),
        click.option("--suite-version", type=int, help="Pin a version (default: the suite's active one at each tick)."),
        click.option("--cron", help='5 fields, wall-clock in --timezone, e.g. "0 2 * * *".'),
        click.option("--interval-seconds", type=int, help="Every N seconds (at least 60), instead of --cron."),
        click.option("--timezone", help="IANA name (create: default UTC; update: unchanged unless given)."),
        click.option("--overlap-policy", type=click.Choice(["skip", "buffer_one", "allow_all"])),
        click.option("--enabled/--disabled", default=None),
        click.option("--model", "models_", multiple=True, help="run.models (repeatable)."),
        click.option("--task-id", "task_ids", multiple=True, help="run.task_ids (repeatable)."),
        click.option("--run", "run_json", help="The run template as a JSON object (models, generation...)."),
        click.option("--webhook-url"),
        click.option("--webhook-secret-env", help="NAME of the environment variable holding the webhook secret."),
        click.option("--alpha", type=float, help="Regression alerts: false discovery rate (default 0.05)."),
        click.option("--min-drop", type=float, help="Regression alerts: smallest drop flagged (default 0.01)."),
        click.option("--metadata", multiple=True, help="K=V (repeatable)."),
        click.option("--org", default="org_default", show_default=True, help="The org the schedule belongs to."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _body(opts: dict) -> dict:
    body = _body_file(opts["body_file"])
    run = dict(body.get("run") or {})
    if opts["run_json"]:
        try:
            run.update(json.loads(opts["run_json"]))
        except (ValueError, TypeError) as e:
            raise InvalidInput("--run", f"not a JSON object: {e}") from None
    if opts["models_"]:
        run["models"] = list(opts["models_"])
    if opts["task_ids"]:
        run["task_ids"] = list(opts["task_ids"])
    if run:
        body["run"] = run
    for key in ("name", "description", "suite_version", "cron", "interval_seconds", "timezone", "overlap_policy",
                "enabled", "webhook_url"):
        if opts[key] is not None:
            body[key] = opts[key]
    secret = _secret(opts["webhook_secret_env"])
    if secret is not None:
        body["webhook_secret"] = secret
    regression = {k: v for k, v in (("alpha", opts["alpha"]), ("min_drop", opts["min_drop"])) if v is not None}
    if regression:
        body["regression"] = {**(body.get("regression") or {}), **regression}
    if opts["metadata"]:
        body["metadata"] = _metadata(opts["metadata"])
    return body


def _page(items: list, limit: int) -> dict:
    data = items[:limit]
    return {"object": "list", "data": data, "has_more": len(items) > limit,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@schedules_group.command("create")
@click.option("--suite-id")
@_schedule_options
@front_door
def schedules_create(suite_id: str | None, **opts) -> None:
    """Create a schedule; prints the eval.schedule."""
    body = _body(opts)
    if suite_id:
        body["suite_id"] = suite_id
    _emit(service.create_schedule(service.open_runtime(), body, org_id=opts["org"], team_id=f"{opts['org']}-team",
                                  self_addresses=_server()))


@schedules_group.command("list")
@click.option("--suite-id")
@click.option("--enabled/--disabled", default=None)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--after", help="The last schedule id of the previous page.")
@click.option("--org", default="org_default", show_default=True)
@front_door
def schedules_list(suite_id: str | None, enabled: bool | None, limit: int, after: str | None, org: str) -> None:
    """List schedules, newest first."""
    items = service.list_schedules(service.open_runtime(), org_id=org, after=after, limit=limit + 1,
                                   suite_id=suite_id, enabled=enabled)
    _emit(_page(items, limit))


@schedules_group.command("get")
@click.argument("schedule_id")
@click.option("--org", default="org_default", show_default=True)
@front_door
def schedules_get(schedule_id: str, org: str) -> None:
    """Print a schedule."""
    _emit(service.get_schedule(service.open_runtime(), schedule_id, org_id=org))


@schedules_group.command("update")
@click.argument("schedule_id")
@_schedule_options
@front_door
def schedules_update(schedule_id: str, **opts) -> None:
    """Change a schedule: only what is given changes (a --body file may set fields to null)."""
    _emit(service.update_schedule(service.open_runtime(), schedule_id, _body(opts), org_id=opts["org"],
                                  self_addresses=_server()))


@schedules_group.command("delete")
@click.argument("schedule_id")
@click.option("--org", default="org_default", show_default=True)
@front_door
def schedules_delete(schedule_id: str, org: str) -> None:
    """Delete a schedule (the runs it made stay)."""
    _emit(service.delete_schedule(service.open_runtime(), schedule_id, org_id=org))


@schedules_group.command("trigger")
@click.argument("schedule_id")
@click.option("--org", default="org_default", show_default=True)
@click.option("--wait", is_flag=True, help="Execute the run here, then compare it and send its webhook events.")
@front_door
def schedules_trigger(schedule_id: str, org: str, wait: bool) -> None:
    """Run the schedule now under its overlap policy; prints the eval.schedule with `trigger`."""
    rt = service.open_runtime()
    out = service.trigger_schedule(rt, schedule_id, org_id=org)
    if wait and out["trigger"]["run_id"]:
        service.execute_run(rt, out["trigger"]["run_id"], job(GENERATION_JOB))
        service.settle_scheduled_runs(rt)
        service.deliver_webhooks(rt)
        out = {**service.get_schedule(rt, schedule_id, org_id=org), "trigger": out["trigger"],
               "outcome": service.run_outcome(rt, out["trigger"]["run_id"])}
    _emit(out)


@schedules_group.command("runs")
@click.argument("schedule_id")
@click.option("--status", type=click.Choice(["queued", "in_progress", "finalizing", "completed", "failed",
                                             "cancelling", "cancelled"]))
@click.option("--suite-version", type=int)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--after", help="The last run id of the previous page.")
@click.option("--org", default="org_default", show_default=True)
@front_door
def schedules_runs(schedule_id: str, status: str | None, suite_version: int | None, limit: int, after: str | None,
                   org: str) -> None:
    """The runs a schedule made, newest first."""
    items = service.schedule_runs(service.open_runtime(), schedule_id, org_id=org, after=after, limit=limit + 1,
                                  suite_version=suite_version, status=status)
    _emit(_page(items, limit))


@schedules_group.command("ticks")
@click.argument("schedule_id")
@click.option("--org", default="org_default", show_default=True)
@front_door
def schedules_ticks(schedule_id: str, org: str) -> None:
    """A schedule's latest ticks: created, skipped, buffered or failed, with the run or the reason."""
    _emit({"object": "list", "data": service.schedule_ticks(service.open_runtime(), schedule_id, org_id=org)})


@schedules_group.command("deliveries")
@click.argument("schedule_id")
@click.option("--org", default="org_default", show_default=True)
@front_door
def schedules_deliveries(schedule_id: str, org: str) -> None:
    """A schedule's webhook events, each attempt with its status code, time and error."""
    _emit({"object": "list", "data": service.webhook_deliveries(service.open_runtime(), schedule_id, org_id=org)})


@schedules_group.command("tick")
@front_door
def schedules_tick() -> None:
    """Evaluate the schedules once here: due ticks make their runs, ended runs are compared, due webhook
    events are sent (the daemon's sensors do this every 10 s)."""
    rt = service.open_runtime()
    ticks = [vars(r) for r in service.evaluate_schedules(rt)]
    _emit({"ticks": ticks, "settled": service.settle_scheduled_runs(rt), "webhooks": service.deliver_webhooks(rt)})
