"""Suites from a manifest over the API, driven by the `meetkai-mka1` SDK: datasets read from a loopback
Hub, prompts rendered, a run of the tiny model over the new suite graded; versions and deletion; bad
manifests rejected with the field named and nothing written."""
import json

import dagster as dg
import httpx
import pytest
from hub_server import HubRepo, HubServer
from sqlalchemy import func, select
from test_api_runs import _sdk

from eval_pipeline import runs
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.service.launching import execute_in_process
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.keys import create_key

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Kenya", "Nairobi")]
SUMS = [(2, 3), (10, 5), (7, 8), (1, 1), (4, 9)]


def _jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _repo() -> HubRepo:
    repo = HubRepo()
    repo.commit({
        "capitals/test.jsonl": _jsonl({"country": c, "capital": k} for c, k in CAPITALS),
        "capitals/train.jsonl": _jsonl([{"country": "Chile", "capital": "Santiago"}]),
        "colors/test.csv": b"thing,answer\nsky,blue\ngrass,green\nblood,red\n",
        "data/sums-00000-of-00001.jsonl": _jsonl({"a": a, "b": b, "answer": str(a + b)} for a, b in SUMS),
        "README.md": b"# test data\n",
    })
    return repo


MANIFEST = {"tasks": [
    {"id": "capitals", "type": "qa", "name": "Capitals",
     "dataset": {"source": "huggingface", "path": "acme/evalsets", "name": "capitals", "split": "test"},
     "prompt_template": "Q: What is the capital of {{ country }}?\nA:", "target_template": "{{ capital }}",
     "output_extraction": {"type": "take_first"}, "metrics": [{"id": "exact_match"}],
     "fewshot": {"count": 1, "dataset": {"source": "huggingface", "path": "acme/evalsets", "name": "capitals",
                                         "split": "train"}}},
    {"id": "colors", "type": "multiple_choice",
     "dataset": {"source": "huggingface", "path": "acme/evalsets", "data_files": {"test": "colors/*.csv"}},
     "prompt_template": "The colour of {{ thing }} is", "choices": ["red", "green", "blue"],
     "target_template": "{{ answer }}"},
    {"id": "sums", "type": "math",
     "dataset": {"source": "huggingface", "path": "acme/evalsets", "split": "sums", "max_rows": 4},
     "prompt_template": "{{ a }} + {{ b }} =", "output_extraction": {"type": "number"}},
]}


def _counts(home):
    with home.catalog.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (t.Suite, t.SuiteVersion, t.Task, t.File))


def test_the_sdk_creates_runs_versions_and_deletes_a_manifest_suite(eval_home, api, monkeypatch):
    key = create_key(eval_home.catalog, "acme")["key"]
    sdk, who = _sdk(api, key, user="ana")
    with HubServer() as hub:
        hub.repos["acme/evalsets"] = _repo()
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        suite = sdk.llm.evals.create_suite(name="house evals", manifest=MANIFEST, description="three tasks",
                                           metadata={"team": "eval"}, **who)
        assert (suite.latest_version, suite.active_version, suite.org_id, suite.metadata) == (1, 1, "acme",
                                                                                            {"team": "eval"})
        version = sdk.llm.evals.get_suite_version(suite_id=suite.id, version=1, **who)
        tasks = {tk["name"]: tk for tk in version.manifest.tasks}
        assert set(tasks) == {"acme/capitals", "acme/colors", "acme/sums"}
        assert [tasks[n]["n_docs"] for n in sorted(tasks)] == [4, 3, 4]
        assert tasks["acme/colors"]["request_kind"] == "loglikelihood"
        assert tasks["acme/sums"]["metrics"][0]["metric"] == "numeric_match"

        run = sdk.llm.evals.create_run(suite_id=suite.id, models=["tiny"], generation={"max_gen_toks": 6}, **who)
        execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run.id,
                           defs.resolve_job_def(GENERATION_JOB), run_config={"loggers": {"console": {"config": {
                               "log_level": "ERROR"}}}})
        done = sdk.llm.evals.get_run(run_id=run.id, **who)
        assert done.status == "completed" and done.request_counts.failed == 0
        assert done.request_counts.total == 4 + 3 * 3 + 4  # a loglikelihood request per choice
        samples = sdk.llm.evals.list_samples(run_id=run.id, limit=100, **who).data
        by_task = {}
        for sm in samples:
            by_task.setdefault(sm.task_id, []).append(sm)
        cap = sorted(by_task[tasks["acme/capitals"]["id"]], key=lambda x: x.sample_index)
        # one few-shot example from the train split, then the rendered question
        assert cap[1].prompt == "Q: What is the capital of Chile?\nA:\nSantiago\n\nQ: What is the capital of Japan?\nA:"
        assert [x.target for x in cap] == [k for _, k in CAPITALS]
        assert all("exact_match,take_first" in x.scores for x in cap)
        colors = by_task[tasks["acme/colors"]["id"]]
        assert all(set(x.scores) >= {"acc,none", "acc_norm,none"} for x in colors)
        sums = by_task[tasks["acme/sums"]["id"]]
        assert len(sums) == 4 and all("numeric_match,number" in x.scores for x in sums)
        assert done.metrics

        # a new version from changed data, not made active: runs keep using version 1
        repo = hub.repos["acme/evalsets"]
        repo.commit({"capitals/test.jsonl": _jsonl({"country": c, "capital": k}
                                                   for c, k in CAPITALS + [("Italy", "Rome")])})
        v2 = sdk.llm.evals.create_suite_version(suite_id=suite.id, manifest={"tasks": MANIFEST["tasks"][:1]},
                                                metadata={"why": "more rows"}, make_active=False, **who)
        assert v2.version == 2 and v2.metadata == {"why": "more rows"} and len(v2.manifest.tasks) == 1
        assert v2.manifest.tasks[0]["n_docs"] == 5 and v2.manifest.tasks[0]["version"] == 2
        again = sdk.llm.evals.get_suite(suite_id=suite.id, **who)
        assert (again.active_version, again.latest_version) == (1, 2)
        assert sdk.llm.evals.create_run(suite_id=suite.id, models=["tiny"], **who).suite_version == 1
        assert sdk.llm.evals.get_suite_version(suite_id=suite.id, version=1, **who).manifest.tasks[0][
            "n_docs"] == 4  # version 1 still pins the task's first inputs
        assert [v.version for v in sdk.llm.evals.list_suite_versions(suite_id=suite.id, **who).data] == [1, 2]

    # the UI shows the new suite version
    instance = dg.DagsterInstance.get()
    assert suite.id in instance.get_dynamic_partitions("suite")

    from mka1 import errors as mka1_errors

    busy = httpx.delete(f"{api}/api/v1/llm/evals/suites/{suite.id}", headers={"Authorization": f"Bearer {key}"})
    assert busy.status_code == 409  # the second run is queued
    queued = [r["id"] for r in runs.list_runs(eval_home.catalog, suite_id=suite.id) if r["status"] == "queued"]
    runs.cancel_run(eval_home.catalog, queued[0])
    gone = sdk.llm.evals.delete_suite(suite_id=suite.id, **who)
    assert gone.deleted and gone.deleted_runs == 2
    with pytest.raises(mka1_errors.SDKDefaultError) as e:
        sdk.llm.evals.get_suite(suite_id=suite.id, **who)
    assert e.value.status_code == 404
    assert runs.list_runs(eval_home.catalog, suite_id=suite.id) == []
    assert not eval_home.lake.exists(f"suites/{suite.id}/manifest.json")


BAD = [
    ({"tasks": []}, "manifest.tasks"),
    ({"tasks": [{"id": "x", "type": "transcription", "dataset": {"path": "acme/evalsets"}}]}, "manifest.tasks[0].type"),
    ({"tasks": [{"id": "x", "type": "qa", "dataset": {"path": "acme/evalsets"},
                 "grader": {"type": "python", "source": "import os"}}]}, "manifest.tasks[0].grader"),
    ({"tasks": [{"id": "x", "type": "qa", "dataset": {"source": "huggingface"}}]}, "manifest.tasks[0].dataset.path"),
    ({"tasks": [{"id": "x", "type": "qa", "dataset": {"path": "acme/evalsets", "split": "nope"}}]},
     "manifest.tasks[0].dataset.split"),
    ({"tasks": [{"id": "x", "type": "qa", "dataset": {"path": "acme/evalsets", "name": "capitals"},
                 "prompt_template": "{{ missing }}", "target_template": "{{ capital }}"}]},
     "manifest.tasks[0].prompt_template"),
    ({"tasks": [{"id": "x", "type": "qa", "dataset": {"path": "acme/evalsets", "name": "capitals"},
                 "prompt_template": "{{ country }}", "target_template": "{{ capital }}",
                 "metrics": [{"id": "no_such_metric"}]}]}, "manifest.tasks[0].metrics[0].id"),
    ({"tasks": [{"id": "x", "type": "multiple_choice", "dataset": {"path": "acme/evalsets", "name": "capitals"},
                 "prompt_template": "{{ country }}", "target_template": "{{ capital }}", "choices": ["a", "b"]}]},
     "manifest.tasks[0].target_template"),
    ({"tasks": [{"id": "ok", "type": "qa", "dataset": {"path": "acme/evalsets", "name": "capitals"},
                 "prompt_template": "{{ country }}", "target_template": "{{ capital }}"},
                {"id": "x", "type": "qa", "dataset": {"path": "acme/evalsets", "name": "capitals"},
                 "output_extraction": {"type": "regex", "pattern": "("}}]},
     "manifest.tasks[1].output_extraction.pattern"),
]


def test_bad_manifests_name_the_field_and_write_nothing(eval_home, api, monkeypatch):
    key = create_key(eval_home.catalog, "acme")["key"]
    headers = {"Authorization": f"Bearer {key}"}
    repo = _repo()
    repo.commit({"broken/test.jsonl": b'{"prompt": "a", "target": "b"}\n{not json\n'})
    with HubServer() as hub:
        hub.repos["acme/evalsets"] = repo
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        before = _counts(eval_home)
        for manifest, field in BAD:
            answer = httpx.post(f"{api}/api/v1/llm/evals/suites", json={"name": "bad", "manifest": manifest},
                                headers=headers)
            assert answer.status_code == 400, (field, answer.text)
            assert answer.json()["error"]["details"] == {"field": field}, answer.text
        broken = httpx.post(f"{api}/api/v1/llm/evals/suites", headers=headers, json={"name": "bad", "manifest": {
            "tasks": [{"id": "x", "type": "qa", "dataset": {"path": "acme/evalsets", "name": "broken"}}]}})
        assert broken.status_code == 400 and broken.json()["error"]["details"] == {"file": "broken/test.jsonl",
                                                                                 "line": 2}
        missing_repo = httpx.post(f"{api}/api/v1/llm/evals/suites", headers=headers, json={"name": "bad", "manifest": {
            "tasks": [{"id": "x", "type": "qa", "dataset": {"path": "acme/nothing"}}]}})
        # the Hub answers an unknown repo like a private one (401) when no token is sent
        assert missing_repo.status_code == 400 and "acme/nothing" in missing_repo.json()["error"]["message"]
        assert _counts(eval_home) == before
        ok = {"name": "twice", "manifest": {"tasks": [MANIFEST["tasks"][0]]}}
        assert httpx.post(f"{api}/api/v1/llm/evals/suites", json=ok, headers=headers).status_code == 200
        assert httpx.post(f"{api}/api/v1/llm/evals/suites", json=ok, headers=headers).status_code == 409
        # names are per org: another org may use the same one
        other = {"Authorization": f"Bearer {create_key(eval_home.catalog, 'globex')['key']}"}
        theirs = httpx.post(f"{api}/api/v1/llm/evals/suites", json=ok, headers=other)
        assert theirs.status_code == 200 and theirs.json()["org_id"] == "globex"
