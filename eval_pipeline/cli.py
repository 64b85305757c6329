"""The command line: a thin front door over the core. Prints JSON; exit 0 done, 2 bad input, 1 failure."""
from __future__ import annotations

import functools
import json
import os
import sys

import click

from eval_pipeline.errors import INPUT_ERRORS, EvalPipelineError
from eval_pipeline.runtime import Runtime, open_runtime


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


def dagster_instance(rt: Runtime):
    os.environ.setdefault("DAGSTER_HOME", str(rt.settings.dagster_home))
    import dagster as dg

    return dg.DagsterInstance.get()


@click.group()
def main() -> None:
    """eval-pipeline: import lm-eval results into versioned suites and inspect them."""


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
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _metadata(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not K=V", param_hint="--metadata")
        k, v = pair.split("=", 1)
        out[k] = v
    return out


def _run_import(source: dict, opts: dict) -> None:
    from eval_pipeline.importing import import_results

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
    rt = open_runtime()
    result = import_results(rt.catalog, rt.lake, request, hub_token=os.environ.get("HF_TOKEN") or None,
                            s3_endpoint_url=rt.settings.s3_endpoint_url)
    if not result.dry_run:
        from eval_pipeline.lineage import report_import

        report_import(dagster_instance(rt), result)
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
    from eval_pipeline.suites import list_suites

    _emit({"object": "list", "data": list_suites(open_runtime().catalog)})


@suites.command("get")
@click.argument("suite_id")
@front_door
def suites_get(suite_id: str) -> None:
    from eval_pipeline.suites import get_suite

    _emit(get_suite(open_runtime().catalog, suite_id))


@main.group()
def tasks() -> None:
    """Tasks known to the catalog."""


@tasks.command("list")
@front_door
def tasks_list() -> None:
    from eval_pipeline.tasks import list_tasks

    _emit({"object": "list", "data": list_tasks(open_runtime().catalog)})


@main.command()
@front_door
def demo() -> None:
    """Import generated lm-eval results through the Dagster job, then print the suite and its metrics."""
    from eval_pipeline.demo import run_demo

    rt = open_runtime()
    run_demo(rt, dagster_instance(rt), click.echo)


if __name__ == "__main__":
    main()
