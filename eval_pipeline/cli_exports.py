"""CLI group `exports`: export tasks of finished runs (registered on the main group in cli.py)."""
from __future__ import annotations

import click

from eval_pipeline.cli_common import _emit, dagster_instance, front_door
from eval_pipeline.runtime import open_runtime



@click.group("exports")
def exports_group() -> None:
    """Export bundles: a run's samples and metrics to an S3-compatible bucket or the service's storage."""


@exports_group.command("create")
@click.argument("run_id")
@click.option("--storage", "storage_type", type=click.Choice(["object", "s3", "system"]), default="system",
              show_default=True, help="object (alias s3): an S3-compatible bucket; system: the lake, under exports/.")
@click.option("--bucket", help="object: the bucket (credentials from the standard AWS variables).")
@click.option("--prefix", help="Key prefix inside the bucket (object) or under exports/ (system).")
@click.option("--content", help="Format bundle (required there): comma-separated prompt,prediction,completion,"
                                 "metrics,system.")
@click.option("--format", "fmt", default="bundle", show_default=True,
              help="bundle, or lm-eval: per model lm-eval 0.4.13's results_<ts>.json and samples_<task>_<ts>.jsonl.")
@click.option("--queue", is_flag=True, help="Only queue it, for the Dagster daemon's sensor; default: export now.")
@front_door
def exports_create(run_id, storage_type, bucket, prefix, content, fmt, queue) -> None:
    from eval_pipeline.exports import create_export, get_export

    rt = open_runtime()
    body = {"run_id": run_id, "storage_type": "object" if storage_type == "s3" else storage_type, "bucket": bucket,
            "prefix": prefix, "format": fmt}
    if content is not None:  # left out, not empty: format lm-eval takes none, bundle says it is required
        body["content"] = [c.strip() for c in content.split(",") if c.strip()]
    export = create_export(rt.catalog, body)
    if not queue:
        from eval_pipeline.definitions import defs
        from eval_pipeline.orchestration import EXPORT_JOB, QUIET, execute_export

        execute_export(dagster_instance(rt), rt.catalog, export["id"], defs.resolve_job_def(EXPORT_JOB), QUIET)
        export = get_export(rt.catalog, export["id"])
    _emit(export)
    if export["status"] == "failed":
        raise SystemExit(1)


@exports_group.command("get")
@click.argument("export_id")
@front_door
def exports_get(export_id: str) -> None:
    from eval_pipeline.exports import get_export

    _emit(get_export(open_runtime().catalog, export_id))
