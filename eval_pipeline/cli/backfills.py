"""CLI commands `stale` and `backfill` (registered on the main group in main.py)."""
from __future__ import annotations

from pathlib import Path

import click

from eval_pipeline import service
from eval_pipeline.cli.common import _emit, front_door
from eval_pipeline.cli.runs import _json_option
from eval_pipeline.orchestration.job_names import GENERATION_JOB


@click.command("stale")
@click.option("--suite", "suite_id", help="One suite (default: every suite, at its active version).")
@click.option("--model", help="One model.")
@click.option("--judge-model", help="The judge graded with now: results judged by another are stale.")
@click.option("--judge-rubric-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The rubric graded with now (a text file): results judged under another are stale.")
@front_door
def stale(suite_id: str | None, model: str | None, judge_model: str | None, judge_rubric_file: Path | None) -> None:
    """Print the stale (model, task) cells as JSON: each cell's latest completed result and why it is stale
    (task_version, grading or model, with what it was and what it is now)."""
    rubric = judge_rubric_file.read_text() if judge_rubric_file else None
    _emit(service.stale_cells(service.open_runtime(), suite_id=suite_id, model=model, judge_model=judge_model,
                              rubric=rubric))


def _definitions():
    from eval_pipeline.orchestration.definitions import defs  # deferred: it loads every asset module

    return defs


@click.command("backfill")
@click.option("--suite", "suite_id", help="The suite (required but with --stale).")
@click.option("--suite-version", type=int, help="Default: the suite's active version.")
@click.option("--model", "models_", multiple=True, help="A model (repeatable); with --revision, exactly one.")
@click.option("--revision", "revisions", multiple=True,
              help="A revision of the model's Hub repo, or a checkpoint folder (repeatable, in training order).")
@click.option("--task", "task_ids", multiple=True, help="A task id (repeatable; default: every task of the suite).")
@click.option("--stale", is_flag=True, help="Exactly the stale cells (see `eval-pipeline stale`).")
@click.option("--max-samples-per-task", type=int)
@click.option("--generation", "generation_json", help="Generation settings, as a JSON object.")
@click.option("--name")
@click.option("--wait", is_flag=True, help="Execute the backfill here and return when it ends.")
@click.option("--resume", "resume_id", help="Execute here what backfill RESUME left unfinished (after a crash).")
@front_door
def backfill(suite_id, suite_version, models_, revisions, task_ids, stale, max_samples_per_task, generation_json,
             name, wait, resume_id) -> None:
    """Evaluate models (or one model's revisions, or the stale cells) over a suite's tasks as one eval run
    and one Dagster backfill of its (model, task) partitions; prints one object per backfill (id, eval run,
    partitions, status). Without --wait the Dagster daemon runs it (UI: Overview -> Backfills)."""
    rt = service.open_runtime()
    defs = _definitions()
    job = defs.resolve_job_def(GENERATION_JOB)
    if resume_id:
        _emit([service.resume_backfill(rt, resume_id, defs.resolve_asset_graph(), job)])
        return
    settings = {"max_samples_per_task": max_samples_per_task, "name": name,
                "generation": _json_option(generation_json, "--generation") or None}
    body = {"suite_id": suite_id, "suite_version": suite_version, "models": list(models_),
            "revisions": list(revisions) or None, "task_ids": list(task_ids) or None, "stale": stale,
            "run": {k: v for k, v in settings.items() if v is not None}}
    _emit(service.create_backfill(rt, {k: v for k, v in body.items() if v is not None}, defs.resolve_asset_graph(),
                                  job=job, wait=wait))
