"""Stale cells of the model x task grid, each of the three causes changed in turn: its grading settings
(`tasks set-metrics`), the task's inputs (a manifest suite's next version reads one more row from a
loopback Hub), and the model's files (a weights file rewritten). A cell
re-evaluated since is fresh again; cells never evaluated are not listed."""
import json
import os

from helpers import run_cli
from hub_server import HubServer
from sqlalchemy import select
from test_api_suites import _repo

from eval_pipeline import runs, service
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import QUIET, execute_in_process
from eval_pipeline.stores.catalog import tables as t


def _sums(rows: int) -> dict:
    return {"tasks": [{"id": "sums", "type": "math", "name": "Sums", "prompt_template": "{{ a }} + {{ b }} =",
                       "dataset": {"source": "huggingface", "path": "acme/evalsets", "split": "sums",
                                   "max_rows": rows}, "output_extraction": {"type": "number"}}]}


def _evaluate(home, task_ids: list[str] | None, suite_id: str | None = None) -> str:
    run = runs.create_run(home.catalog, home.lake, {
        "suite_id": suite_id or home.suite_id, "models": ["tiny"], "max_samples_per_task": 2,
        "generation": {"max_gen_toks": 4}, "max_workflow_sample_activities": 100,
        **({"task_ids": task_ids} if task_ids else {})})
    results = execute_in_process(dagster_instance(home), home.catalog, home.lake, run["id"],
                                 defs.resolve_job_def(GENERATION_JOB), run_config=QUIET)
    assert all(r.success for r in results)
    assert runs.get_run(home.catalog, run["id"])["status"] == "completed"
    return run["id"]


def _cells(found: list[dict]) -> dict[str, list[tuple]]:
    """task -> [(cause, field, was, now)] for the tiny model's stale cells."""
    return {c["task"]: [(r["cause"], r["field"], r["was"], r["now"]) for r in c["reasons"]]
            for c in found if c["model"] == "tiny"}


def test_each_cause_makes_exactly_its_cells_stale_and_a_new_result_clears_them(eval_home, tiny_model, monkeypatch):
    with eval_home.catalog.session() as s:
        ids = dict(s.execute(select(t.Task.name, t.Task.id)).all())
    first = _evaluate(eval_home, [ids["ev_mc_a"], ids["ev_gen_a"]])
    assert service.stale_cells(eval_home) == []  # fresh; ev_mc_b and ev_gen_b were never evaluated

    # grading settings: a new metric_list for one task
    service.set_metric_list(eval_home, ids["ev_gen_a"], [{"metric": "exact_match", "ignore_case": True}])
    found = service.stale_cells(eval_home, suite_id=eval_home.suite_id)
    assert list(_cells(found)) == ["ev_gen_a"]
    ((cause, field, was, now),) = _cells(found)["ev_gen_a"]
    assert (cause, field) == ("grading", "metric_list") and now == [{"metric": "exact_match", "ignore_case": True}]
    assert was != now and found[0]["latest_run_id"] == first and found[0]["partition_key"] == "tiny|ev_gen_a"
    # the CLI prints the same cells
    out = run_cli(eval_home.settings.home, "stale", "--suite", eval_home.suite_id, "--model", "tiny")
    assert out.returncode == 0, out.stderr
    assert _cells(json.loads(out.stdout)) == _cells(found)
    assert json.loads(run_cli(eval_home.settings.home, "stale", "--model", "nobody").stdout) == []

    second = _evaluate(eval_home, [ids["ev_gen_a"]])  # re-evaluated under the new metrics: fresh again
    assert service.stale_cells(eval_home) == []

    # the task's inputs: a manifest suite whose next version reads one more row (task version 2)
    with HubServer() as hub:
        hub.repos["acme/evalsets"] = _repo()
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        made = service.create_suite(eval_home, {"name": "sums suite", "manifest": _sums(3)}, org_id="org_default",
                                    team_id="team_default")
        manifest_run = _evaluate(eval_home, None, suite_id=made["id"])
        assert service.stale_cells(eval_home, suite_id=made["id"]) == []
        service.create_suite_version(eval_home, made["id"], {"manifest": _sums(4)}, org_id="org_default")
    (cell,) = service.stale_cells(eval_home, suite_id=made["id"])
    assert (cell["task"], cell["latest_run_id"], cell["reasons"]) == ("org_default/sums", manifest_run, [
        {"cause": "task_version", "field": "task_version", "was": 1, "now": 2}])
    assert service.stale_cells(eval_home, suite_id=eval_home.suite_id) == []  # the other suite is untouched

    # the model's files: a weights file rewritten (its size and mtime are in the fingerprint)
    weights = next(p for p in tiny_model.iterdir() if p.suffix == ".safetensors")
    before = weights.stat()
    try:
        os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        cells = _cells(service.stale_cells(eval_home))
        assert sorted(cells) == ["ev_gen_a", "ev_mc_a", "org_default/sums"]
        assert [r[0] for r in cells["ev_gen_a"]] == [r[0] for r in cells["ev_mc_a"]] == ["model"]
        assert [r[0] for r in cells["org_default/sums"]] == ["task_version", "model"]
        latest = {c["task"]: c["latest_run_id"] for c in service.stale_cells(eval_home, suite_id=eval_home.suite_id)}
        assert latest == {"ev_mc_a": first, "ev_gen_a": second}
    finally:
        os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert len(service.stale_cells(eval_home)) == 1  # the files as they were: only the sums cell
