"""Backfills: three checkpoints of the tiny model (built with different seeds, as training revisions) over
two tasks as one eval run and one Dagster backfill, executed by the CLI with --wait, killed mid-way and
resumed without redoing finished cells; its report draws the training curve. Without a Dagster daemon a
backfill not executed here is refused (tests/test_browser_ui.py has `dagster dev` run one); a stale-only backfill
evaluates exactly those cells."""
import json
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from helpers import cli_command, cli_env
from sqlalchemy import select

from eval_pipeline import runs, service
from eval_pipeline.demo.tiny_model import build_tiny_model
from eval_pipeline.errors import Conflict, InvalidInput
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import RUN_TAG
from eval_pipeline.service.location import LOCATION_NAME
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.keys import create_key


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return [build_tiny_model(tmp_path_factory.mktemp("ckpt") / f"step-{100 * (i + 1)}", seed=i + 1) for i in range(3)]


def _task_ids(home, *names) -> list[str]:
    with home.catalog.session() as s:
        found = dict(s.execute(select(t.Task.name, t.Task.id)).all())
    return [found[n] for n in names]


def _backfill_run(home) -> str | None:
    with home.catalog.session() as s:
        return s.scalar(select(t.Run.id).where(t.Run.origin.like("dagster:%")))


def _done(home, run_id) -> dict[str, dict]:
    """The done partitions' generation chunks: path -> the file's modification time (ns)."""
    root = Path(home.lake.root)
    return {f"{p.model}|{p.task_key}": {c["path"]: (root / c["path"]).stat().st_mtime_ns for c in p.chunks}
            for p in runs.run_partitions(home.catalog, run_id) if p.status == "done"}


def test_three_checkpoints_killed_mid_way_resume_and_draw_the_training_curve(eval_home, checkpoints):
    home = eval_home
    tasks = _task_ids(home, "ev_mc_a", "ev_gen_a")
    args = ["backfill", "--suite", home.suite_id, "--model", "tiny", *[a for c in checkpoints for a in
            ("--revision", str(c))], *[a for tid in tasks for a in ("--task", tid)], "--max-samples-per-task", "3",
            "--generation", '{"max_gen_toks": 4}', "--wait"]
    proc = subprocess.Popen(cli_command(*args), env=cli_env(home.settings.home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:  # kill it once the first checkpoint's cells are done: a crash between cells
        run_id, before = None, {}
        for _ in range(600):
            run_id = run_id or _backfill_run(home)
            before = _done(home, run_id) if run_id else {}
            if len(before) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert run_id is not None and 2 <= len(before) < 6, before
    run = runs.get_run(home.catalog, run_id)
    with home.catalog.session() as s:
        backfill_id = s.get(t.Run, run_id).origin.removeprefix("dagster:")
    assert run["status"] == "in_progress" and dagster_instance(home).get_backfill(backfill_id) is None

    resumed = service.resume_backfill(home, backfill_id, defs.resolve_asset_graph(),
                                      defs.resolve_job_def(GENERATION_JOB))
    assert (resumed["status"], resumed["run_status"], resumed["partitions"]) == ("completed", "completed", 6), \
        runs.get_run(home.catalog, run_id)["error"]
    after = _done(home, run_id)
    # finished cells are not generated again: the same chunk files, not rewritten (one whose metrics the
    # crash prevented gets its grades and metrics now)
    assert len(after) == 6 and all(after[k] == v for k, v in before.items())

    names = [f"tiny@step-{100 * (i + 1)}" for i in range(3)]
    run = runs.get_run(home.catalog, run_id, partitions=True)
    assert run["models"] == names and json.loads(run["metadata"]["checkpoints"]) == names
    assert {m: set(tasks_) for m, tasks_ in run["metrics"].items()} == {n: {"ev_mc_a", "ev_gen_a"} for n in names}
    # one Dagster backfill, completed, each cell materialised; its runs carry the backfill and the location
    instance = dagster_instance(home)
    backfill = instance.get_backfill(backfill_id)
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    assert backfill.asset_backfill_data.materialized_subset.num_partitions_and_non_partitioned_assets == 18
    dagster_runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert dagster_runs and all(r.tags[RUN_TAG] == run_id for r in dagster_runs)
    assert {r.remote_job_origin.location_name for r in dagster_runs} == {LOCATION_NAME}
    # the training curve, revisions in the order backfilled
    page = home.lake.read_bytes(f"reports/{run_id}/report.html").decode()
    assert 'id="checkpoint-curve"' in page and '"categoryarray":["step-100","step-200","step-300"]' in page
    _look_at(Path(home.lake.root) / "reports" / run_id / "report.html")


def _look_at(report: Path) -> None:
    """The report with its training curve, rendered in chromium for a person to look at (test-artifacts)."""
    from playwright.sync_api import sync_playwright
    from test_browser_ui import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        return  # tests/test_browser_ui.py fails under CI without it
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        page.locator("#checkpoint-curve .main-svg").first.wait_for(timeout=30_000)
        page.screenshot(path=ARTIFACTS / "report-checkpoint-curve.png")
        browser.close()
    assert errors == []


def test_without_a_daemon_only_wait_runs_a_backfill_and_stale_backfills_take_exactly_the_stale_cells(eval_home):
    home = eval_home
    graph = defs.resolve_asset_graph()
    mc_a, gen_a = _task_ids(home, "ev_mc_a", "ev_gen_a")
    body = {"suite_id": home.suite_id, "models": ["tiny"], "task_ids": [mc_a, gen_a],
            "run": {"max_samples_per_task": 2}}
    with pytest.raises(Conflict, match="no Dagster daemon"):  # it would never start (tests/test_browser_ui.py has one)
        service.create_backfill(home, body, graph)
    assert runs.list_runs(home.catalog) == [] and dagster_instance(home).get_backfills() == []

    # nothing is stale (no completed result yet); a completed run, then a changed metric list: one cell
    job = defs.resolve_job_def(GENERATION_JOB)
    assert service.create_backfill(home, {"stale": True}, graph, job=job, wait=True) == []
    first = service.create_backfill(home, body, graph, job=defs.resolve_job_def(GENERATION_JOB), wait=True)
    assert first[0]["status"] == "completed"
    service.set_metric_list(home, gen_a, [{"metric": "exact_match", "ignore_case": True}])
    (stale,) = service.create_backfill(home, {"stale": True, "run": {"max_samples_per_task": 2}}, graph,
                                       job=defs.resolve_job_def(GENERATION_JOB), wait=True)
    assert (stale["status"], stale["partitions"]) == ("completed", 1)
    assert [(p.model, p.task_id) for p in runs.run_partitions(home.catalog, stale["run_id"])] == [("tiny", gen_a)]
    assert service.stale_cells(home) == []

    for bad_body, field in [({"suite_id": home.suite_id, "models": ["tiny", "tiny2"], "revisions": ["main"]}, "models"),
                        ({"suite_id": home.suite_id, "models": ["nobody"], "revisions": ["main"]}, "models[0]"),
                        ({"suite_id": home.suite_id, "models": ["tiny"], "revisions": ["no/such/dir"]}, "revisions[0]"),
                        ({"models": ["tiny"]}, "suite_id"),
                        ({"stale": True, "revisions": ["main"]}, "revisions"),
                        ({"stale": "yes"}, "stale"),
                        ({"suite_id": 5, "models": ["tiny"]}, "suite_id"),
                        ({"suite_id": home.suite_id, "models": "tiny"}, "models"),
                        ({"suite_id": home.suite_id, "models": ["tiny"], "revisions": [f"r{i}" for i in range(3)]},
                         "revisions[0]"),  # tiny is a local folder: it has no Hub revisions
                        ({"suite_id": home.suite_id, "models": ["tiny"], "run": {"max_samples_per_task": 0}},
                         "max_samples_per_task")]:
        with pytest.raises(InvalidInput) as bad:
            service.create_backfill(home, bad_body, graph, job=job, wait=True)
        assert bad.value.field == field
    assert len(runs.list_runs(home.catalog)) == 2  # the two backfills above; nothing from the bad ones


def test_a_checkpoint_name_taken_with_other_settings_is_refused_and_bad_series_metadata_draws_no_curve(
        eval_home, tmp_path):
    from eval_pipeline.results.report_page import page

    graph, job = defs.resolve_asset_graph(), defs.resolve_job_def(GENERATION_JOB)
    first, second = tmp_path / "a" / "step-1", tmp_path / "b" / "step-1"
    for folder in (first, second):
        folder.mkdir(parents=True)
    service.add_model(eval_home, "tiny@step-1", {"backend": "vllm", "path": str(first)})
    with pytest.raises(InvalidInput) as taken:
        service.create_backfill(eval_home, {"suite_id": eval_home.suite_id, "models": ["tiny"],
                                            "revisions": [str(second)]}, graph, job=job, wait=True)
    assert taken.value.field == "revisions[0]" and "registered already" in str(taken.value)
    assert runs.list_runs(eval_home.catalog) == []
    metrics = {"m": {"t": {"acc,none": {"value": 0.5, "stderr": 0.1, "ci_low": 0.3, "ci_high": 0.7, "n": 4}}}}
    for series in ("v2", "5", "null", '["other"]'):  # metadata anyone may set: no curve, no crash
        html_ = page({"id": "r", "suite_id": "s", "suite_version": 1, "status": "completed", "models": ["m"],
                      "metrics": metrics, "metadata": {"checkpoints": series}})
        assert 'id="checkpoint-curve"' not in html_ and 'id="heat-map"' in html_
    named = page({"id": "r", "suite_id": "s", "suite_version": 1, "status": "completed", "models": ["<b>m</b>"],
                  "metrics": {"<b>m</b>": metrics["m"]}})
    assert "<b>m</b>" not in named and "&lt;b&gt;m&lt;/b&gt;" in named


def test_the_http_routes_answer_4xx_for_what_cannot_run_and_list_stale_cells_of_the_org(eval_home, api):
    key = create_key(eval_home.catalog, "acme")["key"]
    other = create_key(eval_home.catalog, "umbrella")["key"]
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{api}/api/v1/llm/evals"
    no_daemon = httpx.post(f"{url}/backfills", headers=headers, json={"suite_id": eval_home.suite_id,
                                                                      "models": ["tiny"]})
    assert no_daemon.status_code == 409 and "no Dagster daemon" in no_daemon.json()["error"]["message"]
    for body in ([], {"suite_id": eval_home.suite_id, "models": ["tiny"], "revisions": "main"}):
        assert httpx.post(f"{url}/backfills", headers=headers, json=body).status_code in (400, 409)
    assert runs.list_runs(eval_home.catalog) == []
    assert httpx.get(f"{url}/stale", headers=headers).json() == {"object": "list", "data": []}
    assert httpx.get(f"{url}/stale", headers=headers, params={"suite_id": eval_home.suite_id}).status_code == 200
    hidden = httpx.get(f"{url}/stale", headers={"Authorization": f"Bearer {other}"},
                       params={"suite_id": eval_home.suite_id})
    assert hidden.status_code == 404  # another org's suite
