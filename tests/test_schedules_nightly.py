"""The deployment's nightly file: each entry is a real `dg.ScheduleDefinition` (listed with its next
ticks by a real `dagster-webserver`, through the GraphQL API its Automation page reads), whose tick makes
one eval run per suite, once per tick however often Dagster evaluates it; a bad file is refused naming the
file and the entry."""
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import pytest
from helpers import cli_env
from services import free_port

from eval_pipeline import service
from eval_pipeline.errors import InvalidInput
from eval_pipeline.orchestration.nightly import nightly_schedules
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import RUN_TAG
from resources import CatalogResource, LakeResource

REPO = Path(__file__).resolve().parents[1]
NIGHTLY = """nightly:
  - name: candidates_regression
    suites: [eval suite]
    models: [tiny]
    cron: "0 2 * * *"
    timezone: Europe/Berlin
    run: {max_samples_per_task: 2, generation: {max_gen_toks: 4}}
"""


def test_each_entry_is_a_dagster_schedule_whose_tick_makes_one_run_per_suite(eval_home):
    (eval_home.settings.home / "nightly.yaml").write_text(NIGHTLY)
    (schedule,) = nightly_schedules()
    assert (schedule.name, schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (
        "candidates_regression", "0 2 * * *", "Europe/Berlin", "generation")
    # the spring change: Dagster runs the 02:00 tick at 03:00 CEST; evaluating it twice makes one eval run
    when = datetime(2026, 3, 29, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    requests = []
    for _ in range(2):
        with dg.build_schedule_context(instance=dagster_instance(eval_home), scheduled_execution_time=when,
                                       resources={"catalog": CatalogResource(), "lake": LakeResource()}) as ctx:
            requests.append(schedule.evaluate_tick(ctx).run_requests)
    assert requests[0] and [r.run_key for r in requests[0]] == [r.run_key for r in requests[1]]
    run_id = requests[0][0].tags[RUN_TAG]
    run = service.get_run(eval_home, run_id)
    assert run["status"] == "in_progress" and run["models"] == ["tiny"]
    assert run["system_tags"] == ["nightly:candidates_regression", f"tick:{int(when.timestamp())}"]
    assert run["settings"]["max_samples_per_task"] == 2 and run["suite_id"] == eval_home.suite_id
    assert run["metadata"] == {"nightly": "candidates_regression", "schedule_tick": f"tick:{int(when.timestamp())}"}
    assert run["generation"] == {"max_output_tokens": 4, "use_cache": False}
    assert len(service.list_runs(eval_home)) == 1
    # its partitions exist for the Dagster runs the tick requested
    instance = dagster_instance(eval_home)
    assert instance.has_dynamic_partition("model", "tiny")
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when.replace(day=30),
                                   resources={"catalog": CatalogResource(), "lake": LakeResource()}) as ctx:
        next_night = schedule.evaluate_tick(ctx).run_requests
    assert next_night[0].tags[RUN_TAG] != run_id and len(service.list_runs(eval_home)) == 2


@pytest.mark.parametrize("entry, field", [
    ("  - {name: a, suites: [s], models: [m], cron: '61 * * * *'}", "nightly[0].cron"),
    ("  - {name: a, suites: [s], models: [m], cron: '0 2 * * *', timezone: Mars/Base}", "nightly[0].timezone"),
    ("  - {name: a-b, suites: [s], models: [m], cron: '0 2 * * *'}", "nightly[0].name"),
    ("  - {name: a, suites: [s], models: [m], cron: '0 2 * * *', hour: 2}", "nightly[0].hour"),
    ("  - {name: a, suites: [s], models: [m], cron: '0 2 * * *', run: {generation: {top_p: 7}}}",
     "nightly[0].run.generation.top_p"),
    ("  - {name: a, suites: [s], models: [m], cron: '0 2 * * *'}\n  - {name: a, suites: [s], models: [m], "
     "cron: '0 3 * * *'}", "nightly[1].name"),
])
def test_a_bad_nightly_file_names_the_file_and_entry(tmp_path, entry, field, monkeypatch):
    path = tmp_path / "nightly.yaml"
    path.write_text("nightly:\n" + entry + "\n")
    with pytest.raises(InvalidInput) as bad:
        service.nightly_entries(path)
    assert bad.value.field == f"{path}: {field}"
    # a file the environment names must exist; the default one may be absent
    monkeypatch.setenv("EVAL_PIPELINE_NIGHTLY", str(tmp_path / "missing.yaml"))
    with pytest.raises(InvalidInput, match="does not exist"):
        service.nightly_entries(tmp_path / "missing.yaml")
    monkeypatch.delenv("EVAL_PIPELINE_NIGHTLY")
    assert service.nightly_entries(tmp_path / "missing.yaml") == []


def test_the_webserver_lists_the_nightly_schedule_with_its_next_ticks(eval_home, tmp_path):
    (eval_home.settings.home / "nightly.yaml").write_text(NIGHTLY)
    port = free_port()
    log = (tmp_path / "webserver.log").open("wb")
    web = subprocess.Popen([str(Path(sys.executable).with_name("dagster-webserver")), "-w",
                            str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)], cwd=REPO,
                           env=cli_env(eval_home.settings.home), stdout=log, stderr=subprocess.STDOUT)
    query = """{ scheduleOrError(scheduleSelector: {
                 repositoryLocationName: "eval_pipeline",
                 repositoryName: "__repository__", scheduleName: "candidates_regression"}) {
                 __typename ... on Schedule { cronSchedule executionTimezone scheduleState { status }
                 futureTicks(limit: 2) { results { timestamp } } } } }"""
    try:
        found = None
        for _ in range(120):
            try:
                found = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=5).json()
                if found["data"]["scheduleOrError"]["__typename"] == "Schedule":
                    break
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass
            time.sleep(1)
    finally:
        web.terminate()
        web.wait(timeout=30)
    schedule = found["data"]["scheduleOrError"]
    assert schedule["cronSchedule"] == "0 2 * * *" and schedule["executionTimezone"] == "Europe/Berlin"
    assert schedule["scheduleState"]["status"] == "RUNNING"
    ticks = [datetime.fromtimestamp(tk["timestamp"], ZoneInfo("Europe/Berlin")) for tk in
             schedule["futureTicks"]["results"]]
    assert len(ticks) == 2 and all((tk.hour, tk.minute) == (2, 0) for tk in ticks) and ticks[0] > datetime.now(
        ZoneInfo("Europe/Berlin"))
