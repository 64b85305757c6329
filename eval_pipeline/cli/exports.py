"""CLI group `exports`: export tasks of finished runs (registered on the main group in main.py)."""
from __future__ import annotations

import click

from eval_pipeline import service
from eval_pipeline.cli.common import _emit, front_door, job
from eval_pipeline.orchestration.job_names import EXPORT_JOB


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
    """Export a completed run (RUN_ID) now, or queue it with --queue; prints the eval.export."""
    body = {"run_id": run_id, "storage_type": "object" if storage_type == "s3" else storage_type, "bucket": bucket,
            "prefix": prefix, "format": fmt}
    if content is not None:  # left out, not empty: format lm-eval takes none, bundle says it is required
        body["content"] = [c.strip() for c in content.split(",") if c.strip()]
    rt = service.open_runtime()
    export = service.create_export(rt, body)
    if not queue:  # the job is loaded only once the request is valid: loading it imports every asset
        export = service.execute_export(rt, export["id"], job(EXPORT_JOB))
    _emit(export)
    if export["status"] == "failed":
        raise SystemExit(1)


@exports_group.command("get")
@click.argument("export_id")
@front_door
def exports_get(export_id: str) -> None:
    """Print an export task (eval.export): status, location, files."""
    _emit(service.get_export(service.open_runtime(), export_id))
