"""Paired comparisons and deltas against imported history, the run report (Markdown, HTML chart,
Dagster metadata, CLI), and human grades for manual tasks holding a run until they are in."""
import json
import math
import statistics

import dagster as dg
import numpy as np
import pytest
from helpers import run_cli
from sqlalchemy import select

from eval_pipeline import runs, service
from eval_pipeline.errors import Conflict, InvalidInput
from eval_pipeline.grading.human import ungraded
from eval_pipeline.models.registry import add_model
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.results.comparisons import history_delta, paired_difference, run_comparisons
from eval_pipeline.service.launching import execute_in_process
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.suites.tasks import set_eval_mode


def _task_ids(home, *names):
    with home.catalog.session() as s:
        return [s.scalar(select(t.Task.id).where(t.Task.name == n)) for n in names]


def test_paired_difference_by_hand():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    a = {i: float(x > 0.4) for i, x in enumerate(base)}
    b = {i: float(x > 0.5) for i, x in enumerate(base)}  # b is right on a subset of a's docs
    b[999] = 1.0  # a doc only one model has is left out
    out = paired_difference(a, b)
    d = [a[i] - b[i] for i in range(200)]
    assert out["n"] == 200 and out["difference"] == pytest.approx(statistics.mean(d))
    assert out["stderr"] == pytest.approx(statistics.stdev(d) / math.sqrt(200))
    assert out["p_value"] < 1e-4 and out["ci_low"] < out["difference"] < out["ci_high"]
    # unpaired error bars would be far wider than the paired one
    unpaired = math.sqrt(statistics.variance(a.values()) / 200 + statistics.variance(list(b.values())[:200]) / 200)
    assert out["stderr"] < unpaired / 2
    same = paired_difference(a, dict(a))
    assert same["difference"] == 0 and same["p_value"] == 1.0
    assert history_delta(0.6, 0.03, 0.5, 0.04) == pytest.approx(
        {"delta": 0.1, "stderr": 0.05, "p_value": 0.0455002638963584})


def test_two_models_history_report_and_metadata(eval_home, tmp_path, quiet_run_config):
    from eval_pipeline.demo.tiny_model import build_tiny_model

    other = build_tiny_model(tmp_path / "tiny-b", seed=1)
    # named like the imported model, so its historical results are its baseline
    add_model(eval_home.catalog, "org/model-a", {"backend": "vllm", "path": str(other), "dtype": "float32",
                                                 "max_model_len": 256})
    mc, gen = _task_ids(eval_home, "ev_mc_a", "ev_gen_a")
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny", "org/model-a"], "task_ids": [mc, gen],
        "generation": {"max_gen_toks": 6}, "name": "two models"})
    instance = dg.DagsterInstance.ephemeral()
    execute_in_process(instance, eval_home.catalog, eval_home.lake, run["id"], defs.resolve_job_def(GENERATION_JOB),
                       run_config=quiet_run_config)
    run = runs.get_run(eval_home.catalog, run["id"])
    assert run["status"] == "completed"
    comparisons = run_comparisons(eval_home.catalog, eval_home.lake, run["id"])
    pairs = {(p["task"], p["metric"], p["filter"]): p for p in comparisons["pairs"]}
    assert set(pairs) >= {("ev_mc_a", "acc", "none"), ("ev_mc_a", "acc_norm", "none")}
    for (task, metric, filt), p in pairs.items():
        a, b = run["metrics"][p["model_a"]][task][f"{metric},{filt}"], run["metrics"][p["model_b"]][task][
            f"{metric},{filt}"]
        assert p["n"] == a["n"] == b["n"]
        assert p["difference"] == pytest.approx(a["value"] - b["value"])  # same docs: difference of means
    with eval_home.catalog.session() as s:
        past = {(m.task_name, m.metric, m.filter): m for m in s.scalars(
            select(t.HistoricalMetric).join(t.HistoricalRun).where(t.HistoricalRun.model == "org/model-a"))}
    deltas = comparisons["history"]
    assert deltas and {d["model"] for d in deltas} == {"org/model-a"}
    for d in deltas:
        then = past[(d["task"], d["metric"], d["filter"])]
        assert d["historical_value"] == then.value
        assert d["delta"] == pytest.approx(run["metrics"]["org/model-a"][d["task"]][f"{d['metric']},{d['filter']}"][
            "value"] - then.value)
    # the HTML report is the run's artifact: the charts (heat map, intervals per task, the deltas against
    # history), one table row per (model, task, metric, filter), the comparison tables, the samples
    (file_id,) = run["artifact_file_ids"]
    with eval_home.catalog.session() as s:
        page = eval_home.lake.read_bytes(s.get(t.File, file_id).path).decode()
    assert all(f'id="{div}"' in page for div in ("heat-map", "task-intervals", "deltas"))
    for model, tasks in run["metrics"].items():
        for task, values in tasks.items():
            for key in values:
                metric, filt = key.split(",")
                assert f"<td>{model}</td><td>{task}</td><td>{metric}</td><td>{filt}</td>" in page, key
    assert "Paired differences" in page and "Against the imported baseline" in page
    assert page.count("<details>") == len({tk for tasks in run["metrics"].values() for tk in tasks})
    # the Markdown report in Dagster's metadata and from the CLI
    mats = instance.fetch_materializations(dg.AssetKey("metrics"), limit=10).records
    reports = [m.asset_materialization.metadata["run_report"].value for m in mats]
    # the last Dagster run of the eval run (newest first) reports every model
    assert "| tiny " in reports[0] and "| org/model-a " in reports[0], reports[0]
    printed = run_cli(eval_home.settings.home, "runs", "report", run["id"], "--html", str(tmp_path / "r.html"))
    assert printed.returncode == 0, printed.stderr
    assert "Against imported history" in printed.stdout and "ev_gen_a" in printed.stdout
    assert (tmp_path / "r.html").read_text() == page  # the same page as the artifact
    compared = json.loads(run_cli(eval_home.settings.home, "runs", "compare", run["id"]).stdout)
    assert compared == json.loads(json.dumps(comparisons))


def test_manual_tasks_wait_for_human_grades(eval_home, quiet_run_config):
    manual, mc = _task_ids(eval_home, "ev_gen_b", "ev_mc_a")
    set_eval_mode(eval_home.catalog, manual, "manual")
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "task_ids": [manual, mc],
        "generation": {"max_gen_toks": 6}})
    execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
    assert runs.get_run(eval_home.catalog, run["id"])["status"] == "in_progress"
    todo = ungraded(eval_home.catalog, eval_home.lake, run["id"])
    assert len(todo) == 10 and {x["task_id"] for x in todo} == {manual}
    assert all(x["prompt"] and x["reference"] is not None for x in todo)
    with pytest.raises(Conflict, match="automatically"):
        service.grade_sample(eval_home, run["id"],
                           {"model": "tiny", "task_id": mc, "doc_id": 0, "score": 1})
    for body, field in [({"doc_id": todo[0]["doc_id"], "score": 1.5}, "score"),
                        ({"doc_id": 10_000, "score": 1}, "doc_id"), ({"doc_id": 0, "score": 1, "x": 1}, "x")]:
        with pytest.raises(InvalidInput) as e:
            service.grade_sample(eval_home, run["id"], {"model": "tiny", "task_id": manual,
                                                                               **body})
        assert e.value.field == field
    scores = {}
    for i, item in enumerate(todo[:-1]):
        scores[item["doc_id"]] = (i % 3) / 2
        out = service.grade_sample(eval_home, run["id"], {
            "model": "tiny", "task_id": manual, "doc_id": item["doc_id"], "score": scores[item["doc_id"]],
            "grader": "ana"})
        assert out["remaining_in_task"] == len(todo) - 1 - i
    assert runs.get_run(eval_home.catalog, run["id"])["status"] == "in_progress"
    last = todo[-1]["doc_id"]
    done = run_cli(eval_home.settings.home, "runs", "grade", run["id"], "--model", "tiny", "--task-id", manual,
                   "--doc-id", str(last), "--score", "1", "--rationale", "right", "--grader", "ben")
    assert done.returncode == 0, done.stderr
    scores[last] = 1.0
    run = runs.get_run(eval_home.catalog, run["id"])
    assert run["status"] == "completed"
    human = run["metrics"]["tiny"]["ev_gen_b"]["human_score,none"]
    assert human["n"] == 10 and human["value"] == pytest.approx(np.mean(list(scores.values())))
    assert ungraded(eval_home.catalog, eval_home.lake, run["id"]) == []
    # a correction after completion replaces the grade and refreshes the run's metrics
    service.grade_sample(eval_home, run["id"],
                       {"model": "tiny", "task_id": manual, "doc_id": last, "score": 0})
    scores[last] = 0.0
    again = runs.get_run(eval_home.catalog, run["id"])["metrics"]["tiny"]["ev_gen_b"]["human_score,none"]
    assert again["n"] == 10 and again["value"] == pytest.approx(np.mean(list(scores.values())))


def test_cli_names_bad_input_for_grading_commands(eval_home):
    home = eval_home.settings.home
    (task_id,) = _task_ids(eval_home, "ev_gen_a")
    bad_json = run_cli(home, "tasks", "set-metrics", task_id, "[{metric")
    assert bad_json.returncode == 2 and "metric_list" in json.loads(bad_json.stderr)["error"]["message"]
    ok = run_cli(home, "tasks", "set-metrics", task_id, '[{"metric": "numeric_match", "abs_tol": 0.5}]')
    assert ok.returncode == 0 and json.loads(ok.stdout)["metrics"] == [{"metric": "numeric_match", "abs_tol": 0.5}]
    mode = run_cli(home, "tasks", "set-mode", task_id, "manual")
    assert json.loads(mode.stdout)["eval_type"] == "manual"
    missing = run_cli(home, "runs", "compare", "eval_run_missing")
    assert missing.returncode == 2 and json.loads(missing.stderr)["error"]["code"] == "not_found"
