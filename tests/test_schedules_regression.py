"""Regression alerts and signed webhooks, end to end on real Dagster runs: a schedule's nights are triggered
and executed in-process, each compared doc by doc with the previous night. A model whose answers change
on 30% of the docs between two nights is flagged (the non-blocking `no_regression` check warns, the run
still completes); two nights with the same answers flag nothing. The webhook events go to a loopback
receiver that verifies each signature with the README's code, answers 503 once (retried) and then 200;
a tampered body or an old timestamp is refused. The secret is in no byte under the home but encrypted."""
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import dagster as dg
from helpers import generated_folder
from openai_server import FlakyOpenAI
from services import LoopbackHTTP

from eval_pipeline import service
from eval_pipeline.demo.synthetic import SyntheticTask
from eval_pipeline.historical.importer import import_results
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.orchestration.sensors import scheduled_run_outcomes
from eval_pipeline.schedules.webhooks import SIGNATURE_HEADER
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import RUN_TAG
from eval_pipeline.stores.secrets import decrypt_secret
from resources import CatalogResource, LakeResource

SECRET = "whsec_nightly-" + "s3cr3t-9f8e7d6c5b4a"
README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = 60


def readme_verify():
    """The receiver's verification function exactly as the README shows it."""
    text = README.read_text()
    block = re.search(r"<!-- webhook-verify -->\s*```python\n(.*?)```", text, re.S)
    assert block, "the README's webhook verification snippet is missing"
    scope: dict = {}
    exec(block.group(1), scope)
    return scope["verify"]


class Receiver(LoopbackHTTP):
    """A webhook receiver: verifies each request with the README's code; the first request gets a 503."""

    def __init__(self, secret: str):
        self.verify, self.secret = readme_verify(), secret
        self.accepted: list[dict] = []
        self.refused = 0
        self.requests = 0
        self._lock = threading.Lock()
        super().__init__(self._handler(), "")

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.requests += 1
                    first = receiver.requests == 1
                if first:
                    return self._answer(503)
                if not receiver.verify(receiver.secret, self.headers.get(SIGNATURE_HEADER, ""), body):
                    with receiver._lock:
                        receiver.refused += 1
                    return self._answer(401)
                with receiver._lock:
                    receiver.accepted.append({"event": self.headers["X-Eval-Pipeline-Event"],
                                              "delivery": self.headers["X-Eval-Pipeline-Delivery"],
                                              "body": json.loads(body)})
                self._answer(200)

            def _answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


def _answers(night: dict):
    """A completions reply: the right product, except on the docs `night["wrong"]` picks."""
    def reply(prompt: str) -> str:
        a, b = map(int, re.search(r"Compute (\d+) \* (\d+)", prompt).groups())
        wrong = night["wrong"] and int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 10 < 3
        return str(a * b + 1 if wrong else a * b)
    return reply


def _night(home, schedule_id):
    """Trigger the schedule, execute its run here, then the outcome sensor (settle and deliver)."""
    run_id = service.trigger_schedule(home, schedule_id)["trigger"]["run_id"]
    run = service.execute_run(home, run_id, defs.resolve_job_def(GENERATION_JOB))
    assert run["status"] == "completed", run["error"]
    with dg.build_sensor_context(instance=dagster_instance(home),
                                 resources={"catalog": CatalogResource(), "lake": LakeResource()}) as context:
        scheduled_run_outcomes(context)
    return run_id


def _check(home, run_id) -> dg.AssetCheckEvaluation:
    instance = dagster_instance(home)
    (dagster_run,) = instance.get_runs(dg.RunsFilter(tags={RUN_TAG: run_id}))
    events = instance.all_logs(dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    (found,) = [e.get_dagster_event().event_specific_data for e in events
                if e.get_dagster_event().event_specific_data.check_name == "no_regression"]
    return found


def test_a_planted_regression_is_flagged_and_signed_webhooks_are_delivered(eval_home, tmp_path, monkeypatch):
    monkeypatch.setenv("EVAL_PIPELINE_WEBHOOK_BACKOFF_SECONDS", "0.01")
    task = SyntheticTask("nightly_gen", "generate_until", DOCS)
    imported = import_results(eval_home.catalog, eval_home.lake, {
        "source": {"type": "path", "url": str(generated_folder(tmp_path / "hist", models=("candidate",),
                                                              tasks=[task]))},
        "suite_name": "nightly suite"})
    night = {"wrong": False}
    with FlakyOpenAI(reply=_answers(night)) as model, Receiver(SECRET) as receiver:
        service.add_model(eval_home, "candidate", {"backend": "openai", "base_url": model.url, "api": "completions"})
        sched = service.create_schedule(eval_home, {
            "name": "candidate nightly", "suite_id": imported.suite_id, "cron": "0 2 * * *",
            "timezone": "Europe/Berlin", "webhook_url": receiver.url + "/hooks/eval", "webhook_secret": SECRET,
            "run": {"models": ["candidate"], "generation": {"use_cache": False}}}, org_id="org_default",
            team_id="team")
        first = _night(eval_home, sched["id"])
        assert _check(eval_home, first).passed  # nothing to compare with but the baseline, no drop
        same = _night(eval_home, sched["id"])
        night["wrong"] = True
        worse = _night(eval_home, sched["id"])
        # the first delivery met the 503 and is still pending: one more round delivers it
        with dg.build_sensor_context(instance=dagster_instance(eval_home),
                                     resources={"catalog": CatalogResource(), "lake": LakeResource()}) as context:
            time.sleep(0.05)
            scheduled_run_outcomes(context)

    changed = sum(int(hashlib.sha256(f"Q: [nightly_gen] Compute {d % 23 + 1} * {d % 7 + 2}.\nA:".encode())
                      .hexdigest(), 16) % 10 < 3 for d in range(DOCS))
    assert 0.2 < changed / DOCS < 0.4  # the planted share: about 30% of the docs

    # two nights with the same answers: compared doc by doc, nothing flagged
    same_outcome = service.run_outcome(eval_home, same)
    assert same_outcome["previous_run_id"] == first and same_outcome["comparisons"] >= 1
    assert same_outcome["regressions"] == [] and _check(eval_home, same).passed
    assert service.get_run(eval_home, same)["metadata"]["regressions"] == "0"

    # the changed night: flagged against the previous night, paired by doc, the run still completed
    outcome = service.run_outcome(eval_home, worse)
    (reg,) = [r for r in outcome["regressions"] if r["against"] == "previous_run"]
    assert reg["against_id"] == same and reg["paired"] and reg["metric"] == "exact_match"
    assert abs(reg["difference"] + changed / DOCS) < 1e-9 and reg["p_adjusted"] < 0.05
    check = _check(eval_home, worse)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert service.get_run(eval_home, worse)["status"] == "completed"
    assert service.get_run(eval_home, worse)["metadata"]["regressions"] == str(len(outcome["regressions"]))
    overview = service.run_overview(eval_home, worse)
    assert [r["against"] for r in overview["regressions"]] == [r["against"] for r in outcome["regressions"]]
    assert "REGRESSION" in service.run_report(eval_home, worse)
    # the first night had no previous night but the baseline: the imported results of the same model
    first_outcome = service.run_outcome(eval_home, first)
    assert first_outcome["previous_run_id"] is None and first_outcome["comparisons"] >= 1

    # webhooks: every event delivered once, verified; the 503 was retried and recorded
    events = [(a["event"], a["body"]["run"]["id"]) for a in receiver.accepted]
    assert sorted(events) == sorted([("eval.run.completed", first), ("eval.run.completed", same),
                                     ("eval.run.completed", worse), ("eval.run.regression", worse)])
    assert receiver.refused == 0 and receiver.requests == 5
    regression_event = next(a["body"] for a in receiver.accepted if a["event"] == "eval.run.regression")
    assert regression_event["schedule"]["id"] == sched["id"] and regression_event["regressions"]
    assert regression_event["metrics"]["candidate"]["nightly_gen"]["exact_match,strict-match"]["value"] < 1
    deliveries = service.webhook_deliveries(eval_home, sched["id"])
    assert all(d["status"] == "delivered" for d in deliveries)
    retried = [d for d in deliveries if len(d["attempts"]) == 2]
    assert len(retried) == 1 and [a["status_code"] for a in retried[0]["attempts"]] == [503, 200]

    # a tampered body, a wrong secret or an old timestamp fails the README's verification
    verify = readme_verify()
    body = json.dumps(regression_event).encode()
    from eval_pipeline.schedules.webhooks import sign

    good = sign(SECRET, int(time.time()), body)
    assert verify(SECRET, good, body)
    assert not verify(SECRET, good, body.replace(b"regression", b"completed", 1))
    assert not verify("whsec_someone-else-entirely", good, body)
    assert not verify(SECRET, sign(SECRET, int(time.time()) - 3600, body), body)

    # the secret: only its encrypted form is stored, nowhere in clear under the home
    with eval_home.catalog.session() as s:
        from eval_pipeline.stores.catalog import tables as t

        token = s.get(t.Schedule, sched["id"]).webhook_secret_encrypted
    assert token and SECRET not in token and decrypt_secret(eval_home.settings.home, token) == SECRET
    leaks = [p for p in eval_home.settings.home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []
