"""CLI commands `stale` and `backfill` (registered on the main group in main.py)."""
from __future__ import annotations

from pathlib import Path

import click

from eval_pipeline import service
from eval_pipeline.cli.common import _emit, front_door


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
