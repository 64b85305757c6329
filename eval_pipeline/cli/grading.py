"""`runs` subcommands about a run's grades and results: report, compare, regrade, grade, ungraded
(added to the `runs` group of runs.py)."""
from __future__ import annotations

from pathlib import Path

import click

from eval_pipeline import service
from eval_pipeline.cli.common import _emit, front_door
from eval_pipeline.cli.runs import runs_group


@runs_group.command("report")
@click.argument("run_id")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the HTML report (chart with error bars) to this file.")
@front_door
def runs_report(run_id: str, html_out: Path | None) -> None:
    """Print the run's metrics with error bars, paired differences and deltas against history."""
    rt = service.open_runtime()
    click.echo(service.run_report(rt, run_id))
    if html_out:
        html_out.write_text(service.run_report(rt, run_id, html=True), encoding="utf-8")


@runs_group.command("compare")
@click.argument("run_id")
@front_door
def runs_compare(run_id: str) -> None:
    """JSON: paired differences between the run's models per task, and deltas against imported history."""
    _emit(service.run_comparisons(service.open_runtime(), run_id))


@runs_group.command("regrade")
@click.argument("run_id")
@click.option("--judge-model", help="Judge the run's judged tasks with this model.")
@click.option("--rubric-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The judge's rubric: text with {question}, {reference} and {prediction}.")
@click.option("--embedding-model", help="Add embedding similarity with this model.")
@front_door
def runs_regrade(run_id: str, judge_model, rubric_file, embedding_model) -> None:
    """Grade a completed run again (new grades beside the old; nothing is regenerated)."""
    _emit(service.regrade_run(service.open_runtime(), run_id, judge_model=judge_model,
                              judge_rubric=rubric_file.read_text(encoding="utf-8") if rubric_file else None,
                              embedding_model=embedding_model))


@runs_group.command("grade")
@click.argument("run_id")
@click.option("--model", required=True)
@click.option("--task-id", required=True)
@click.option("--doc-id", type=int, required=True)
@click.option("--score", type=float, required=True, help="From 0 (wrong) to 1 (right).")
@click.option("--rationale")
@click.option("--grader", help="Who grades (recorded with the grade).")
@front_door
def runs_grade(run_id: str, **grade) -> None:
    """Submit a human grade for one sample of a manual task."""
    _emit(service.grade_sample(service.open_runtime(), run_id, {k: v for k, v in grade.items() if v is not None}))


@runs_group.command("ungraded")
@click.argument("run_id")
@front_door
def runs_ungraded(run_id: str) -> None:
    """The samples of the run's manual tasks that still wait for a human grade."""
    data = service.ungraded_samples(service.open_runtime(), run_id)
    _emit({"object": "list", "data": data, "has_more": False})
