"""MKA1's seven schedule operations driven by the real `meetkai-mka1` SDK (every response parses under its
models), the rules of a schedule's fields answered as 400s naming the field, org isolation, and the CLI's
`schedules` commands on the same home."""
import json

import httpx
import pytest
from helpers import run_cli

from eval_pipeline import service

ORG = "acme"  # the org `serving` gives the home's suite
SECRET = "whsec_" + "k3y-for-the-api-test-0123456789"


def _sdk(url, home):
    from mka1 import SDK

    return SDK(server_url=url, bearer_auth=service.create_key(home, ORG)["key"])


def test_the_sdk_drives_all_seven_schedule_operations(eval_home, api):
    sdk = _sdk(api, eval_home)
    ev = sdk.llm.evals
    created = ev.create_schedule(name="nightly regression", suite_id=eval_home.suite_id,
                                 run={"models": ["tiny"], "generation": {"max_gen_toks": 8}},
                                 cron="0 2 * * *", timezone="Europe/Berlin", overlap_policy="buffer_one",
                                 webhook_url="http://127.0.0.1:9/hook", webhook_secret=SECRET,
                                 description="two candidates", metadata={"team": "eval"}, x_on_behalf_of="ana")
    assert created.object == "eval.schedule" and created.timezone == "Europe/Berlin" and created.enabled
    assert created.webhook_configured and created.webhook_url == "http://127.0.0.1:9/hook"
    assert created.next_run_at is not None and created.last_run_id is None and created.run.models == ["tiny"]
    assert created.overlap_policy == "buffer_one" and created.metadata == {"team": "eval"}
    other = ev.create_schedule(name="hourly", suite_id=eval_home.suite_id, run={"models": ["tiny"]},
                               interval_seconds=3600, enabled=False)
    assert other.timezone == "UTC" and other.overlap_policy == "skip" and other.next_run_at is None
    assert ev.get_schedule(schedule_id=created.id).description == "two candidates"
    listed = ev.list_schedules(limit=1)
    assert [s.id for s in listed.data] == [other.id] and listed.has_more
    assert [s.id for s in ev.list_schedules(after=listed.last_id).data] == [created.id]
    assert [s.id for s in ev.list_schedules(enabled="true").data] == [created.id]
    assert [s.id for s in ev.list_schedules(suite_id=eval_home.suite_id, enabled="false").data] == [other.id]
    # PATCH: absent stays, null clears, an interval replaces the cron
    updated = ev.update_schedule(schedule_id=created.id, interval_seconds=120, description=None, enabled=True)
    assert updated.cron is None and updated.interval_seconds == 120 and updated.description is None
    assert updated.webhook_configured and updated.timezone == "Europe/Berlin" and updated.next_run_at % 120 == 0
    triggered = ev.trigger_schedule(schedule_id=created.id)
    assert triggered.last_run_id is not None and triggered.last_run_status == "queued"
    runs = ev.list_schedule_runs(schedule_id=created.id)
    assert [r.id for r in runs.data] == [triggered.last_run_id] and runs.data[0].object == "eval.run"
    assert runs.data[0].metadata["schedule_id"] == created.id
    assert ev.list_schedule_runs(schedule_id=created.id, status="completed").data == []
    assert ev.list_schedule_runs(schedule_id=created.id, suite_version=1, suite_id=eval_home.suite_id).data
    deleted = ev.delete_schedule(schedule_id=created.id)
    assert deleted.deleted and deleted.object == "eval.schedule.deleted" and deleted.id == created.id
    from mka1.errors import SDKDefaultError

    with pytest.raises(SDKDefaultError) as gone:
        ev.get_schedule(schedule_id=created.id)
    assert gone.value.status_code == 404
    # the run the schedule made stays
    assert service.get_run(eval_home, triggered.last_run_id)["id"] == triggered.last_run_id


BAD_CREATES = [
    ({"run": {"models": ["tiny", "no-such-model"]}}, 400, "run.models[1]"),
    ({"run": {"models": ["tiny"], "generation": {"top_p": 3}}}, 400, "run.generation.top_p"),
    ({"run": {"models": ["tiny"], "task_ids": ["eval_task_nope"]}}, 400, "run.task_ids[0]"),
    ({"run": {"models": []}}, 400, "run.models"),
    ({"cron": "61 * * * *"}, 400, "cron"),
    ({"cron": "0 2 * *"}, 400, "cron"),
    ({"cron": "0 2 * * *", "interval_seconds": 3600}, 400, "cron"),
    ({"cron": None, "interval_seconds": 30}, 400, "interval_seconds"),
    ({"cron": None}, 400, "cron"),
    ({"timezone": "Mars/Olympus_Mons"}, 400, "timezone"),
    ({"timezone": "America"}, 400, "timezone"),  # a folder of zones, not a zone
    ({"cron": "0 0 31 4 *"}, 400, "cron"),  # valid syntax, no such date: it would never tick
    ({"overlap_policy": "never"}, 400, "overlap_policy"),
    ({"webhook_url": "ftp://example.com/hook", "webhook_secret": SECRET}, 400, "webhook_url"),
    ({"webhook_url": "http://\u2603.com/hook", "webhook_secret": SECRET}, 400, "webhook_url"),
    ({"webhook_url": "http://example.com:99999/hook", "webhook_secret": SECRET}, 400, "webhook_url"),
    ({"regression": {"alpha": 1.5}}, 400, "regression.alpha"),
    ({"webhook_url": "http://example.com/hook"}, 400, "webhook_secret"),
    ({"webhook_url": "http://example.com/hook", "webhook_secret": "short"}, 400, "webhook_secret"),
    ({"suite_version": 99}, 400, "suite_version"),
    ({"suite_id": "eval_suite_missing"}, 404, None),
    ({"frequency": "daily"}, 400, "frequency"),
]


def test_bad_schedules_are_refused_naming_the_field(eval_home, api):
    key = service.create_key(eval_home, ORG)["key"]
    for change, status, field in BAD_CREATES:
        body = {"name": "n", "suite_id": eval_home.suite_id, "run": {"models": ["tiny"]}, "cron": "0 2 * * *",
                **change}
        body = {k: v for k, v in body.items() if not (k == "cron" and v is None)}
        r = httpx.post(api + "/api/v1/llm/evals/schedules", json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == status, (change, r.text)
        if field:
            assert r.json()["error"]["message"].startswith(f"{field}:"), (change, r.json())
    assert service.list_schedules(eval_home, org_id=ORG) == []  # nothing half-written


def test_updates_are_checked_whole_and_orgs_are_isolated(eval_home, api):
    ours = {"Authorization": f"Bearer {service.create_key(eval_home, ORG)['key']}"}
    theirs = {"Authorization": f"Bearer {service.create_key(eval_home, 'globex')['key']}"}
    url = api + "/api/v1/llm/evals/schedules"
    made = httpx.post(url, headers=ours, json={"name": "n", "suite_id": eval_home.suite_id,
                                               "run": {"models": ["tiny"]}, "interval_seconds": 600}).json()
    for body, field in [({"run": {"models": ["tiny", "ghost"]}}, "run.models[1]"),
                        ({"interval_seconds": None}, "cron"), ({"suite_id": "x"}, "suite_id"),
                        ({"webhook_secret": SECRET}, "webhook_url"),
                        # a webhook pointing back at the server itself, however its address is spelled
                        ({"webhook_url": api + "/api/v1/llm/evals/runs", "webhook_secret": SECRET}, "webhook_url"),
                        ({"webhook_url": api.replace("127.0.0.1", "127.1"), "webhook_secret": SECRET}, "webhook_url"),
                        ({"webhook_url": api.replace("127.0.0.1", "[::ffff:127.0.0.1]"), "webhook_secret": SECRET},
                         "webhook_url")]:
        r = httpx.patch(f"{url}/{made['id']}", headers=ours, json=body)
        assert r.status_code == 400 and r.json()["error"]["message"].startswith(f"{field}:"), (body, r.text)
    assert httpx.get(f"{url}/{made['id']}", headers=ours).json() == {**made}
    for method, path in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/trigger"), ("GET", "/runs")]:
        r = httpx.request(method, f"{url}/{made['id']}{path}", headers=theirs, json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    assert httpx.get(url, headers=theirs).json()["data"] == []
    # another org's suite cannot be scheduled
    r = httpx.post(url, headers=theirs, json={"name": "n", "suite_id": eval_home.suite_id,
                                              "run": {"models": ["tiny"]}, "interval_seconds": 600})
    assert r.status_code == 404
    assert httpx.get(url, headers=ours, params={"enabled": "maybe"}).status_code == 400
    # numbers JSON cannot carry back (Infinity, NaN, 1e999) are refused, not stored
    for raw in (b'{"regression": {"min_drop": 1e999}}', b'{"run": {"models": ["tiny"], "metadata": NaN}}',
                b'{"run": {"models": ["tiny"], "generation": {"extra_body": {"x": Infinity}}}}'):
        r = httpx.patch(f"{url}/{made['id']}", headers={**ours, "Content-Type": "application/json"}, content=raw)
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("body:"), r.text
    assert httpx.get(f"{url}/{made['id']}", headers=ours).json() == {**made}


def test_the_cli_schedules_commands(eval_home, tmp_path):
    home = eval_home.settings.home
    made = run_cli(home, "schedules", "create", "--suite-id", eval_home.suite_id, "--name", "cli nightly",
                   "--cron", "30 2 * * *", "--timezone", "America/New_York", "--model", "tiny",
                   "--webhook-url", "http://127.0.0.1:9/hook", "--webhook-secret-env", "HOOK_SECRET",
                   "--min-drop", "0.05", env_extra={"HOOK_SECRET": SECRET})
    assert made.returncode == 0, made.stderr
    sched = json.loads(made.stdout)
    assert sched["webhook_configured"] and sched["regression"] == {"alpha": 0.05, "min_drop": 0.05}
    assert SECRET not in made.stdout
    bad = run_cli(home, "schedules", "update", sched["id"], "--interval-seconds", "5")
    assert bad.returncode == 2 and json.loads(bad.stderr)["error"]["message"].startswith("interval_seconds:")
    changed = json.loads(run_cli(home, "schedules", "update", sched["id"], "--disabled").stdout)
    assert changed["enabled"] is False and changed["next_run_at"] is None and changed["cron"] == "30 2 * * *"
    listed = json.loads(run_cli(home, "schedules", "list", "--disabled").stdout)
    assert [s["id"] for s in listed["data"]] == [sched["id"]]
    trig = json.loads(run_cli(home, "schedules", "trigger", sched["id"]).stdout)
    assert trig["trigger"]["status"] == "created" and trig["last_run_id"] == trig["trigger"]["run_id"]
    runs = json.loads(run_cli(home, "schedules", "runs", sched["id"]).stdout)
    assert [r["id"] for r in runs["data"]] == [trig["last_run_id"]]
    ticks = json.loads(run_cli(home, "schedules", "ticks", sched["id"]).stdout)
    assert [tk["kind"] for tk in ticks["data"]] == ["trigger"]
    assert json.loads(run_cli(home, "schedules", "get", sched["id"]).stdout)["id"] == sched["id"]
    assert json.loads(run_cli(home, "schedules", "deliveries", sched["id"]).stdout)["data"] == []
    gone = json.loads(run_cli(home, "schedules", "delete", sched["id"]).stdout)
    assert gone == {"id": sched["id"], "object": "eval.schedule.deleted", "deleted": True}
    missing = run_cli(home, "schedules", "get", sched["id"])
    assert missing.returncode == 2 and json.loads(missing.stderr)["error"]["code"] == "not_found"
