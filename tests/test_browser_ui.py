"""The Dagster UI and the run report as a person sees them: Debian's chromium, driven by Playwright, against
`dagster dev` on a test home after an eval run executed in-process (as `runs create --wait`, the demo and
the server's worker execute them), and a backfill that `dagster dev`'s daemon executes. Screenshots are
written to test-artifacts/ui/ (looked at, never compared pixel by pixel)."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from helpers import cli_env
from services import free_port
from sqlalchemy import select

from eval_pipeline import runs, service
from eval_pipeline.errors import Conflict
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import QUIET, execute_in_process
from eval_pipeline.service.location import LOCATION_NAME
from eval_pipeline.stores.catalog import tables as t

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, without a sandbox; no background networking: this machine's closed network refuses it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
NIGHTLY = """nightly:
  - name: candidates_nightly
    suites: [eval suite]
    models: [tiny]
    cron: "0 2 * * *"
    timezone: UTC
"""

NO_CHROMIUM = "Debian's chromium is not installed (`make test` installs it with apt-get)"
# a CI run must not pass without its browser tests
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason=NO_CHROMIUM)


@pytest.fixture
def evaluated(eval_home):
    """The test home after one eval run of the tiny model on four tasks (one Dagster run, a partition
    range), with a nightly file: (home, eval run, the Dagster run's id)."""
    (eval_home.settings.home / "nightly.yaml").write_text(NIGHTLY)
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "max_samples_per_task": 3,
        "generation": {"max_gen_toks": 4}, "max_workflow_sample_activities": 100})
    (result,) = execute_in_process(dagster_instance(eval_home), eval_home.catalog, eval_home.lake, run["id"],
                                   defs.resolve_job_def(GENERATION_JOB), run_config=QUIET)
    assert result.success
    return eval_home, runs.get_run(eval_home.catalog, run["id"], partitions=True), result.run_id


@pytest.fixture
def dagster_dev(evaluated, tmp_path):
    """`dagster dev` (webserver and daemon) on the test home; yields the UI's base URL."""
    home = evaluated[0]
    port = free_port()
    log = (tmp_path / "dagster-dev.log").open("wb")
    env = cli_env(home.settings.home, DAGSTER_HOME=str(home.settings.dagster_home))
    proc = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(REPO / "workspace.yaml"),
                             "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(url + "/server_info", timeout=2).status_code == 200 and _location_loaded(url):
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail("dagster dev did not load the code location: "
                        + (tmp_path / "dagster-dev.log").read_text()[-3000:])
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)


def _location_loaded(url: str) -> bool:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    entries = httpx.post(url + "/graphql", json={"query": query}, timeout=5).json()["data"]["workspaceOrError"]
    return any(e["name"] == LOCATION_NAME and e["loadStatus"] == "LOADED" for e in entries["locationEntries"])


def _graphql(url: str, query: str) -> dict:
    body = httpx.post(url + "/graphql", json={"query": query}, timeout=30).json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), NO_CHROMIUM
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _page(browser, errors: list[str]):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def _skip_the_welcome(page) -> None:
    """A first visit's "Join the Dagster community" dialog, skipped (remembered for the page's origin)."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=10_000)
    except Exception:  # noqa: BLE001  (no dialog this time)
        return
    skip.click()


def _submit_backfill(home) -> dict:
    """A backfill of two cells left to `dagster dev`'s daemon (refused until its backfill loop beats)."""
    with home.catalog.session() as s:
        tasks = list(s.scalars(select(t.Task.id).where(t.Task.name.in_(["ev_mc_a", "ev_gen_a"]))))
    body = {"suite_id": home.suite_id, "models": ["tiny"], "task_ids": tasks,
            "run": {"max_samples_per_task": 2, "generation": {"max_gen_toks": 4}, "name": "daemon backfill"}}
    for _ in range(120):
        try:
            (made,) = service.create_backfill(home, body, defs.resolve_asset_graph())
            return made
        except Conflict:
            time.sleep(1)
    pytest.fail("the daemon's backfill loop never beat")


def test_the_ui_shows_runs_checks_per_partition_backfills_schedules_and_the_report(dagster_dev, evaluated,
                                                                                   browser):
    home, run, dagster_run_id = evaluated
    keys = sorted(p["partition_key"] for p in run["partitions"])
    assert len(keys) == 4
    made = _submit_backfill(home)  # the daemon runs it while the pages below are looked at

    # the in-process run is one of its job's runs, under the workspace's code location (the Runs tab's query)
    job = _graphql(dagster_dev, f"""{{ pipelineOrError(params: {{repositoryLocationName: "{LOCATION_NAME}",
        repositoryName: "__repository__", pipelineName: "{GENERATION_JOB}"}}) {{
        ... on Pipeline {{ runs {{ runId repositoryOrigin {{ repositoryLocationName }} }} }} }} }}""")
    assert [r["runId"] for r in job["pipelineOrError"]["runs"]] == [dagster_run_id]

    # each partition of each check has its own evaluation, though one Dagster run covered both
    for asset, check in [("generations", "generations_complete"), ("generations", "generations_healthy"),
                         ("grades", "grades_valid"), ("metrics", "metrics_valid"), ("metrics", "no_regression")]:
        found = _graphql(dagster_dev, f"""{{ assetCheckExecutions(assetKey: {{path: ["{asset}"]}},
            checkName: "{check}", limit: 10) {{ status runId partition evaluation {{ success }} }} }}""")
        done = found["assetCheckExecutions"]
        assert sorted(e["partition"] for e in done) == keys, (check, done)
        assert {(e["status"], e["runId"]) for e in done} == {("SUCCEEDED", dagster_run_id)}, (check, done)

    errors: list[str] = []
    page = _page(browser, errors)
    page.goto(f"{dagster_dev}/locations/{LOCATION_NAME}/asset-groups/evaluation/lineage")
    _skip_the_welcome(page)
    page.get_by_text("generations", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("metrics", exact=True).first.wait_for()
    page.wait_for_timeout(2000)
    page.screenshot(path=ARTIFACTS / "asset-graph.png")

    page.goto(f"{dagster_dev}/assets/generations?view=checks")
    page.get_by_text("generations_healthy").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    page.screenshot(path=ARTIFACTS / "generations-checks.png", full_page=True)
    text = page.inner_text("body")
    assert "Passed" in text and "Skipped" not in text
    page.locator("button[role=tab]", has_text="Partitions").click()  # the check's own partition grid
    page.wait_for_timeout(3000)
    page.screenshot(path=ARTIFACTS / "generations-check-partitions.png", full_page=True)

    page.goto(f"{dagster_dev}/locations/{LOCATION_NAME}/jobs/{GENERATION_JOB}/runs")
    page.get_by_text(dagster_run_id[:8]).first.wait_for(timeout=60_000)
    page.screenshot(path=ARTIFACTS / "generation-job-runs.png")

    page.goto(f"{dagster_dev}/overview/activity/timeline")
    page.get_by_text(GENERATION_JOB, exact=True).first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    page.screenshot(path=ARTIFACTS / "overview-timeline.png")

    page.goto(f"{dagster_dev}/automation")
    page.get_by_text("candidates_nightly").first.wait_for(timeout=60_000)
    page.wait_for_timeout(3000)
    page.screenshot(path=ARTIFACTS / "automation.png")

    # the daemon's backfill: its runs (launched by the daemon, in their own processes) complete the eval run
    instance = dagster_instance(home)
    for _ in range(600):
        backfill = instance.get_backfill(made["backfill_id"])
        if backfill.status != BulkActionStatus.REQUESTED and runs.get_run(home.catalog, made["run_id"])[
                "status"] in ("completed", "failed"):
            break
        time.sleep(1)
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, backfill.status
    done = runs.get_run(home.catalog, made["run_id"], partitions=True)
    assert done["status"] == "completed" and {p["status"] for p in done["partitions"]} == {"done"}
    launched = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": made["backfill_id"]}))
    assert launched and all(r.tags["eval_pipeline/run_id"] == made["run_id"] for r in launched)
    page.goto(f"{dagster_dev}/overview/backfills")
    page.get_by_text(made["backfill_id"]).first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    page.screenshot(path=ARTIFACTS / "backfills.png")
    page.goto(f"{dagster_dev}/runs/b/{made['backfill_id']}")
    page.wait_for_timeout(4000)
    page.screenshot(path=ARTIFACTS / "backfill.png", full_page=True)
    _the_run_report_renders_offline_without_console_errors(evaluated, browser)


def _the_run_report_renders_offline_without_console_errors(evaluated, browser):
    """Part of the test above (one eval run for both): the report opened in chromium with no network."""
    home, run, _ = evaluated
    path = Path(home.lake.root) / "reports" / run["id"] / "report.html"  # the home's lake is a local folder
    assert path.exists(), path
    errors: list[str] = []
    page = _page(browser, errors)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
               else route.abort())  # offline: the page must need nothing from the network
    page.goto(path.as_uri())
    page.locator("#heat-map .main-svg").first.wait_for(timeout=30_000)
    page.locator("#task-intervals .main-svg").first.wait_for()
    page.screenshot(path=ARTIFACTS / "report.png", full_page=True)
    assert errors == []
    assert page.locator("table").count() >= 1 and page.locator("details").count() == 4  # a browser per task
    page.locator("details summary").first.click()
    page.screenshot(path=ARTIFACTS / "report-samples.png", full_page=True)
