"""The command line: a thin front door over the core. Prints JSON; exit 0 done, 2 bad input, 1 failure."""
from __future__ import annotations

import json
import os

import click

from eval_pipeline import service
from eval_pipeline.cli import grading as _grading  # noqa: F401  (adds its commands to the runs group)
from eval_pipeline.cli.backfills import backfill, stale
from eval_pipeline.cli.common import _emit, _metadata, front_door
from eval_pipeline.cli.exports import exports_group
from eval_pipeline.cli.runs import models, runs_group
from eval_pipeline.cli.schedules import schedules_group
from eval_pipeline.cli.serve import keys, serve
from eval_pipeline.cli.stack import stack_group
from eval_pipeline.errors import InvalidInput


@click.group()
def main() -> None:
    """eval-pipeline: import lm-eval results into versioned suites, register models, run evals."""


@main.group("import")
def import_group() -> None:
    """Import historical lm-evaluation-harness results."""


def _suite_options(fn):
    options = [
        click.option("--path-prefix", default=None, help="Only files under this path."),
        click.option("--file", "files", multiple=True, help="An explicit results file (repeatable)."),
        click.option("--suite-id", default=None, help="Import into this existing suite."),
        click.option("--suite-name", default=None, help="Import into the suite of this name (created if new)."),
        click.option("--suite-description", default=None),
        click.option("--no-create-missing-tasks", is_flag=True, help="Fail instead of adding missing tasks."),
        click.option("--dry-run", is_flag=True, help="Parse and count; write nothing."),
        click.option("--limit-files", type=int, default=None, help="At most N results files (1-100)."),
        click.option("--metadata", multiple=True, help="K=V recorded with the import (repeatable)."),
        click.option("--org", default="org_default", show_default=True,
                     help="The org a new suite belongs to (the API's callers see their org's suites only)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_import(source: dict, opts: dict) -> None:
    request = {
        "source": source, "suite_id": opts["suite_id"], "suite_name": opts["suite_name"],
        "suite_description": opts["suite_description"],
        "create_missing_tasks": not opts["no_create_missing_tasks"], "dry_run": opts["dry_run"],
        "limit_files": opts["limit_files"], "metadata": _metadata(opts["metadata"]),
    }
    if opts["path_prefix"]:
        source["path_prefix"] = opts["path_prefix"]
    if opts["files"]:
        source["files"] = list(opts["files"])
    result = service.import_historical(service.open_runtime(), request, hub_token=os.environ.get("HF_TOKEN") or None,
                                       org_id=opts["org"])
    _emit(result.to_dict())


@import_group.command("hf")
@click.argument("repo")
@click.option("--revision", default="main", help="Branch, tag or commit (recorded as the commit sha).")
@_suite_options
@front_door
def import_hf(repo: str, revision: str, **opts) -> None:
    """Import from a Hugging Face dataset repo (token from HF_TOKEN; endpoint from HF_ENDPOINT)."""
    _run_import({"type": "huggingface", "repo": repo, "revision": revision}, opts)


@import_group.command("path")
@click.argument("url")
@_suite_options
@front_door
def import_path(url: str, **opts) -> None:
    """Import from a local folder or an fsspec URL (file://, s3://)."""
    _run_import({"type": "path", "url": url}, opts)


@main.group()
def suites() -> None:
    """Suites and their versions."""


@suites.command("list")
@front_door
def suites_list() -> None:
    """Print every suite (eval.suite objects), oldest first."""
    _emit({"object": "list", "data": service.list_suites(service.open_runtime())})


@suites.command("get")
@click.argument("suite_id")
@front_door
def suites_get(suite_id: str) -> None:
    """Print a suite with its versions."""
    _emit(service.get_suite(service.open_runtime(), suite_id))


@suites.command("delete")
@click.argument("suite_id")
@click.option("--org", default="org_default", show_default=True, help="The org the suite belongs to.")
@front_door
def suites_delete(suite_id: str, org: str) -> None:
    """Delete a suite with its versions, imported history and runs (refused while one of its runs works)."""
    _emit(service.delete_suite(service.open_runtime(), suite_id, org_id=org))


@main.group()
def tasks() -> None:
    """Tasks known to the catalog."""


@tasks.command("list")
@front_door
def tasks_list() -> None:
    """Print every task with its current version and gradability."""
    _emit({"object": "list", "data": service.list_tasks(service.open_runtime())})


@tasks.command("set-mode")
@click.argument("task_id")
@click.argument("eval_mode", type=click.Choice(["rule", "model", "rule,model", "manual"]))
@front_door
def tasks_set_mode(task_id: str, eval_mode: str) -> None:
    """How TASK_ID is graded: rules, a judge model (the run's judge_model), both, or people (manual)."""
    _emit(service.set_eval_mode(service.open_runtime(), task_id, eval_mode))


@tasks.command("set-metrics")
@click.argument("task_id")
@click.argument("metric_list")
@front_door
def tasks_set_metrics(task_id: str, metric_list: str) -> None:
    """Replace TASK_ID's lm-eval metric_list (JSON), e.g. '[{"metric": "numeric_match", "abs_tol": 0.01}]'."""
    try:
        entries = json.loads(metric_list)
    except json.JSONDecodeError as e:
        raise InvalidInput("metric_list", f"is not JSON: {e.msg} at character {e.pos}") from None
    _emit(service.set_metric_list(service.open_runtime(), task_id, entries))


@main.command()
@front_door
def demo() -> None:
    """Import generated lm-eval results through the Dagster job, then print the suite and its metrics."""
    from eval_pipeline.demo.run import run_demo  # deferred: it loads the Definitions (every asset module)

    run_demo(service.open_runtime(), click.echo)


main.add_command(stale)
main.add_command(backfill)
main.add_command(models)
main.add_command(runs_group)
main.add_command(exports_group)
main.add_command(schedules_group)
main.add_command(serve)
main.add_command(keys)
main.add_command(stack_group)


if __name__ == "__main__":
    main()
