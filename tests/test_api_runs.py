"""The HTTP API on loopback driven by the real `meetkai-mka1` SDK: runs create/get/list/cancel with
strict response models, idempotent creation, API keys and org isolation, errors as 4xx envelopes."""
import time

import httpx
import pytest
from sqlalchemy import select

from eval_pipeline import runs
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.keys import create_key, revoke_key


def _sdk(url, key, user=None):
    from mka1 import SDK

    return SDK(server_url=url, bearer_auth=key), ({"x_on_behalf_of": user} if user else {})


def _task_ids(home):
    with home.catalog.session() as s:
        return [s.scalar(select(t.Task.id).where(t.Task.name == n)) for n in ("ev_mc_a", "ev_gen_a")]


def test_the_sdk_creates_gets_lists_and_cancels_runs(eval_home, api):
    key = create_key(eval_home.catalog, "acme")["key"]
    sdk, who = _sdk(api, key, user="ana")
    created = sdk.llm.evals.create_run(suite_id=eval_home.suite_id, models=["tiny"], task_ids=_task_ids(eval_home),
                                       generation={"max_gen_toks": 8, "temperature": 0.0},
                                       metadata={"purpose": "api test"}, **who)
    assert created.object == "eval.run" and created.status == "queued" and created.org_id == "acme"
    assert created.request_counts.total > 0 and created.tokens.input == 0 and created.completed_at is None
    got = sdk.llm.evals.get_run(run_id=created.id, **who)
    assert got.id == created.id and got.models == ["tiny"] and got.metadata == {"purpose": "api test"}
    assert got.generation.max_output_tokens == 8  # the alias resolved to one setting
    more = [sdk.llm.evals.create_run(suite_id=eval_home.suite_id, models=["tiny"], **who).id for _ in range(2)]
    other_user = sdk.llm.evals.create_run(suite_id=eval_home.suite_id, models=["tiny"], x_on_behalf_of="ben").id
    first = sdk.llm.evals.list_runs(limit=2, **who)
    assert [r.id for r in first.data] == [other_user, more[1]] and first.has_more and first.last_id == more[1]
    second = sdk.llm.evals.list_runs(limit=2, after=first.last_id, **who)
    assert [r.id for r in second.data] == [more[0], created.id] and not second.has_more
    mine = sdk.llm.evals.list_runs(owned_only=True, **who)
    assert {r.id for r in mine.data} == {created.id, *more}
    cancelled = sdk.llm.evals.cancel_run(run_id=created.id, **who)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    assert {r.id for r in sdk.llm.evals.list_runs(status="cancelled", **who).data} == {created.id}
    with eval_home.catalog.session() as s:
        assert s.get(t.Run, created.id).created_by == "ana"


def test_idempotency_key_makes_a_repeat_return_the_first_run(eval_home, api):
    key = create_key(eval_home.catalog, "acme")["key"]
    body = {"suite_id": eval_home.suite_id, "models": ["tiny"]}
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "nightly-2026-11-22"}
    a = httpx.post(api + "/api/v1/llm/evals/runs", json=body, headers=headers)
    b = httpx.post(api + "/api/v1/llm/evals/runs", json=body, headers=headers)
    assert a.status_code == b.status_code == 200 and a.json()["id"] == b.json()["id"]
    assert len(runs.list_runs(eval_home.catalog, org_id="acme")) == 1
    clash = httpx.post(api + "/api/v1/llm/evals/runs", json={**body, "models": ["auto"]}, headers=headers)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "conflict"


def test_keys_orgs_and_error_envelopes(eval_home, api):
    acme, other = create_key(eval_home.catalog, "acme"), create_key(eval_home.catalog, "globex")
    url = api + "/api/v1/llm/evals/runs"
    run = httpx.post(url, json={"suite_id": eval_home.suite_id, "models": ["tiny"]},
                     headers={"Authorization": f"Bearer {acme['key']}"}).json()
    for headers in ({}, {"Authorization": "Bearer ep_wrong"}, {"Authorization": f"Basic {acme['key']}"}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    theirs = {"Authorization": f"Bearer {other['key']}"}
    assert httpx.get(f"{url}/{run['id']}", headers=theirs).status_code == 404
    # nor can another org run on this org's suite
    assert httpx.post(url, json={"suite_id": eval_home.suite_id, "models": ["tiny"]}, headers=theirs).status_code == 404
    assert httpx.post(f"{url}/{run['id']}/cancel", headers=theirs).status_code == 404
    assert httpx.get(url, headers=theirs).json()["data"] == []
    ours = {"Authorization": f"Bearer {acme['key']}"}
    for body, status, field in [
        ({"suite_id": eval_home.suite_id, "models": []}, 400, "models"),
        ({"suite_id": eval_home.suite_id, "models": ["tiny"], "generation_concurrency": 0}, 400,
         "generation_concurrency"),
        ({"suite_id": "eval_suite_missing", "models": ["tiny"]}, 404, None),
        ([1, 2], 400, "body"),
    ]:
        r = httpx.post(url, json=body, headers=ours)
        assert r.status_code == status, r.text
        assert r.json()["error"]["details"] == ({"field": field} if field else None)
    bad_json = httpx.post(url, content=b"{nope", headers={**ours, "Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["details"] == {"field": "body"}
    assert httpx.get(url + "?limit=0", headers=ours).status_code == 422
    assert httpx.get(url + "?status=sleeping", headers=ours).status_code == 422
    assert httpx.post(f"{url}/{run['id']}/cancel", headers=ours).json()["status"] == "cancelled"
    assert httpx.post(f"{url}/{run['id']}/cancel", headers=ours).status_code == 409
    revoke_key(eval_home.catalog, acme["id"])
    assert httpx.get(url, headers=ours).status_code == 401
    with eval_home.catalog.session() as s:  # keys are stored hashed only
        stored = [r.key_sha256 for r in s.scalars(select(t.ApiKey))]
    assert acme["key"] not in stored and len(stored) == 2
    assert httpx.get(api + "/openapi.json").json()["paths"]["/api/v1/llm/evals/runs"]


def test_the_sdk_imports_from_the_hub_and_reads_suites(eval_home, api, tmp_path, monkeypatch):
    from helpers import generated_folder
    from hub_server import HubRepo, HubServer
    from mka1 import errors as mka1_errors

    gen = generated_folder(tmp_path / "gen")
    repo = HubRepo(private=True)
    repo.commit({str(p.relative_to(gen)): p.read_bytes() for p in gen.rglob("*") if p.is_file()})
    key = create_key(eval_home.catalog, "acme")["key"]
    sdk, who = _sdk(api, key, user="ana")
    with HubServer(tokens={"hf_caller"}) as hub:
        hub.repos["acme/lm-eval-results"] = repo
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        source = {"type": "huggingface", "repo": "acme/lm-eval-results", "revision": "main"}
        dry = sdk.llm.evals.import_historical_results(x_hugging_face_token="hf_caller", source=source,
                                                      suite_name="hub history", dry_run=True, **who)
        assert dry.dry_run and dry.discovered_files == 2 and dry.imported_runs == 2
        assert runs.list_runs(eval_home.catalog) == [] and "hub history" not in {
            x["name"] for x in sdk.llm.evals.list_suites(**who).model_dump()["data"]}
        real = sdk.llm.evals.import_historical_results(x_hugging_face_token="hf_caller", source=source,
                                                       suite_name="hub history", **who)
        assert real.created_suite and real.suite_version == 1 and real.imported_samples > 0
        again = sdk.llm.evals.import_historical_results(x_hugging_face_token="hf_caller", source=source,
                                                        suite_name="hub history", **who)
        assert again.imported_runs == 0 and again.skipped_runs == 2 and again.suite_id == real.suite_id
        assert any(h.get("authorization") == "Bearer hf_caller" for _, _, h in hub.requests)
        no_token = httpx.post(api + "/api/v1/llm/evals/imports/huggingface-results", json={"source": source},
                              headers={"Authorization": f"Bearer {key}"})
        assert no_token.status_code == 400 and no_token.json()["error"]["details"] == {"field": "X-HuggingFace-Token"}
        local = httpx.post(api + "/api/v1/llm/evals/imports/huggingface-results",
                           json={"source": {"type": "path", "url": "/etc"}},
                           headers={"Authorization": f"Bearer {key}", "X-HuggingFace-Token": "hf_caller"})
        assert local.status_code == 400 and local.json()["error"]["details"] == {"field": "source.type"}
    suites = sdk.llm.evals.list_suites(**who)
    assert {s.id for s in suites.data} == {eval_home.suite_id, real.suite_id}
    assert [s.id for s in sdk.llm.evals.list_suites(owned_only=True, **who).data] == [real.suite_id]
    suite = sdk.llm.evals.get_suite(suite_id=real.suite_id, **who)
    assert suite.org_id == "acme" and suite.latest_version == 1 and suite.access == "owner"
    versions = sdk.llm.evals.list_suite_versions(suite_id=real.suite_id, **who)
    assert [v.version for v in versions.data] == [1] and not versions.has_more
    version = sdk.llm.evals.get_suite_version(suite_id=real.suite_id, version=1, **who)
    assert version.id == versions.data[0].id and len(version.manifest.tasks) == 2
    other, _ = _sdk(api, create_key(eval_home.catalog, "globex")["key"])
    with pytest.raises(mka1_errors.SDKDefaultError) as e:
        other.llm.evals.get_suite(suite_id=real.suite_id)
    assert e.value.status_code == 404
    assert other.llm.evals.list_suites().data == []
    # the caller's Hub token is stored nowhere
    home = eval_home.settings.home
    assert not any(b"hf_caller" in p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_samples_artifacts_retry_and_delete(eval_home, api):
    import dagster as dg

    from eval_pipeline.orchestration.definitions import defs
    from eval_pipeline.orchestration.job_names import GENERATION_JOB
    from eval_pipeline.service.launching import execute_in_process

    key = create_key(eval_home.catalog, "acme")["key"]
    sdk, who = _sdk(api, key)
    mc, gen = _task_ids(eval_home)
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"],
                                                              "task_ids": [mc, gen], "generation": {"max_gen_toks": 4}},
                          org_id="acme")
    execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB), run_config={"loggers": {"console": {"config": {
                           "log_level": "ERROR"}}}})
    everything = sdk.llm.evals.list_samples(run_id=run["id"], limit=1000)
    assert len(everything.data) == 22 and not everything.has_more
    assert {s.task_id for s in everything.data} == {mc, gen} and all(s.status == "completed" for s in everything.data)
    mc_samples = [s for s in everything.data if s.task_id == mc]
    assert all(s.dataset_row is not None and "acc,none" in s.scores for s in mc_samples)
    assert all(s.output_text in ("", None) or isinstance(s.output_text, str) for s in everything.data)
    pages, after = [], None
    while True:
        page = sdk.llm.evals.list_samples(run_id=run["id"], limit=5, after=after)
        pages += [s.id for s in page.data]
        if not page.has_more:
            break
        after = page.last_id
    assert pages == [s.id for s in everything.data]
    right = sdk.llm.evals.list_samples(run_id=run["id"], score_metric="acc", score_min=1)
    assert {s.id for s in right.data} == {s.id for s in mc_samples if s.scores["acc,none"] == 1.0}
    only = sdk.llm.evals.list_samples(run_id=run["id"], task_id=gen, sample_index="3", include_dataset_row=False)
    assert [(s.task_id, s.sample_index, s.dataset_row) for s in only.data] == [(gen, 3, None)]
    assert sdk.llm.evals.list_samples(run_id=run["id"], model="other").data == []
    artifacts = sdk.llm.evals.get_artifacts(run_id=run["id"])
    assert artifacts.artifact_file_ids == runs.get_run(eval_home.catalog, run["id"])["artifact_file_ids"] != []
    bad = httpx.get(f"{api}/api/v1/llm/evals/runs/{run['id']}/samples?score_min=0.5",
                    headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code == 400 and bad.json()["error"]["details"] == {"field": "score_metric"}
    # retry is for failed runs; a failed one goes back to the queue
    conflict = httpx.post(f"{api}/api/v1/llm/evals/runs/{run['id']}/retry", headers={"Authorization": f"Bearer {key}"})
    assert conflict.status_code == 409
    failing = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"]},
                              org_id="acme")
    runs.mark_started(eval_home.catalog, failing["id"])
    runs.fail_run(eval_home.catalog, failing["id"], "dagster_run_failed", "worker lost")
    retried = sdk.llm.evals.retry_failed_run(run_id=failing["id"])
    assert retried.status == "queued" and retried.error is None
    # delete: gone from the catalog and the lake
    deleted = sdk.llm.evals.delete_run(run_id=run["id"])
    assert deleted.deleted and deleted.id == run["id"]
    assert httpx.get(f"{api}/api/v1/llm/evals/runs/{run['id']}", headers={"Authorization": f"Bearer {key}"}
                     ).status_code == 404
    assert not [p for p in eval_home.lake.list() if run["id"] in p]
    queued = httpx.delete(f"{api}/api/v1/llm/evals/runs/{failing['id']}", headers={"Authorization": f"Bearer {key}"})
    assert queued.status_code == 409


def test_a_server_with_its_own_worker_runs_what_the_sdk_queues(eval_home, executing_api):
    """`serve --execute`: no daemon; the SDK creates a run and polls it to completion, and the work is
    recorded in the Dagster instance like the sensor's."""
    import dagster as dg

    from eval_pipeline.service.instance import dagster_instance
    from eval_pipeline.service.launching import RUN_TAG

    sdk, who = _sdk(executing_api, create_key(eval_home.catalog, "acme")["key"], user="ana")
    run = sdk.llm.evals.create_run(suite_id=eval_home.suite_id, models=["tiny"], task_ids=_task_ids(eval_home),
                                   generation={"max_gen_toks": 4}, **who)
    for _ in range(1200):
        got = sdk.llm.evals.get_run(run_id=run.id, **who)
        if got.status in ("completed", "failed"):
            break
        time.sleep(0.2)
    assert got.status == "completed" and got.request_counts.failed == 0 and got.metrics
    assert got.request_counts.completed == got.request_counts.total
    dagster_runs = dagster_instance(eval_home).get_runs(dg.RunsFilter(tags={RUN_TAG: run.id}))
    assert dagster_runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in dagster_runs)
    assert sdk.llm.evals.get_run_overview(run_id=run.id, **who).trials.completed == got.request_counts.total
