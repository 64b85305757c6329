"""Human grades per sample over the API, and the files API (run report, system-storage export bundle,
suite task inputs) through the `meetkai-mka1` SDK; another org sees none of it."""
import hashlib

import dagster as dg
import httpx
import pytest
from sqlalchemy import select
from test_api_runs import _sdk

from eval_pipeline import runs
from eval_pipeline.exports.tasks import create_export, run_export
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.service.launching import execute_in_process
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.keys import create_key
from eval_pipeline.suites.tasks import set_eval_mode


def _task_id(home, name):
    with home.catalog.session() as s:
        return s.scalar(select(t.Task.id).where(t.Task.name == name))


def test_people_grade_samples_over_the_api_and_files_are_served(eval_home, api, quiet_run_config):
    from mka1 import errors as mka1_errors

    key = create_key(eval_home.catalog, "acme")["key"]
    sdk, who = _sdk(api, key, user="rita")
    headers = {"Authorization": f"Bearer {key}", "X-On-Behalf-Of": "rita"}
    manual, mc = _task_id(eval_home, "ev_gen_b"), _task_id(eval_home, "ev_mc_a")
    set_eval_mode(eval_home.catalog, manual, "manual")
    run = sdk.llm.evals.create_run(suite_id=eval_home.suite_id, models=["tiny"], task_ids=[manual, mc],
                                   generation={"max_gen_toks": 6}, **who)
    execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run.id,
                       defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
    assert sdk.llm.evals.get_run(run_id=run.id).status == "in_progress"
    todo = sdk.llm.evals.list_samples(run_id=run.id, status="ready_to_score", limit=100).data
    assert len(todo) == 10 and {s.task_id for s in todo} == {manual}
    url = f"{api}/api/v1/llm/evals/runs/{run.id}/samples"

    def grade(index, body, hdrs=headers):
        return httpx.post(f"{url}/{index}/grade", json=body, headers=hdrs)

    assert grade(0, {"model": "tiny", "task_id": mc, "score": 1}).status_code == 409  # graded by rule
    bad = grade(todo[0].sample_index, {"model": "tiny", "task_id": manual, "score": 2})
    assert bad.status_code == 400 and bad.json()["error"]["details"] == {"field": "score"}
    mismatch = grade(todo[0].sample_index, {"model": "tiny", "task_id": manual, "score": 1, "doc_id": 999})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["details"] == {"field": "doc_id"}
    outsider = {"Authorization": f"Bearer {create_key(eval_home.catalog, 'globex')['key']}"}
    assert grade(todo[0].sample_index, {"model": "tiny", "task_id": manual, "score": 1},
                 outsider).status_code == 404
    scores = {}
    for i, sample in enumerate(todo):
        scores[sample.sample_index] = (i % 2) * 1.0
        answer = grade(sample.sample_index, {"model": "tiny", "task_id": manual, "score": scores[sample.sample_index],
                                             "rationale": f"checked {i}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["remaining_in_task"] == len(todo) - 1 - i
    done = sdk.llm.evals.get_run(run_id=run.id)
    assert done.status == "completed"
    human = done.metrics["tiny"]["ev_gen_b"]["human_score,none"]
    assert human["n"] == 10 and human["value"] == pytest.approx(sum(scores.values()) / 10)
    graded = sdk.llm.evals.list_samples(run_id=run.id, task_id=manual, limit=100).data
    assert all(s.status == "completed" and s.scores["human_score,none"] == scores[s.sample_index] for s in graded)
    with eval_home.catalog.session() as s:
        assert {g.grader for g in s.scalars(select(t.HumanGrade).where(t.HumanGrade.run_id == run.id))} == {"rita"}

    # the run's report, by id, as JSON metadata and as its bytes
    (report_id,) = sdk.llm.evals.get_artifacts(run_id=run.id).artifact_file_ids
    meta = sdk.llm.files.get(file_id=report_id)
    content = sdk.llm.files.content(file_id=report_id)
    body = content.read()
    assert meta.filename == "report.html" and meta.bytes_ == len(body)
    assert meta.sha256 == hashlib.sha256(body).hexdigest()
    assert content.headers["content-type"].startswith("text/html") and b'id="heat-map"' in body

    # a system-storage export's files get ids and are served the same way
    export = create_export(eval_home.catalog, {"run_id": run.id, "storage_type": "system",
                                               "content": ["prompt", "prediction", "metrics"]})
    files = run_export(eval_home.catalog, eval_home.lake, export["id"])["files"]
    assert {f["name"] for f in files} == {"samples.parquet", "samples.jsonl", "metrics.json", "manifest.json"}
    jsonl = next(f for f in files if f["name"] == "samples.jsonl")
    got = sdk.llm.files.content(file_id=jsonl["file_id"]).read()
    assert hashlib.sha256(got).hexdigest() == jsonl["sha256"] and got.count(b"\n") == jsonl["rows"]
    parquet = next(f for f in files if f["name"] == "samples.parquet")
    raw = httpx.get(f"{api}/api/v1/llm/files/{parquet['file_id']}/content", headers=headers)
    assert raw.status_code == 200 and hashlib.sha256(raw.content).hexdigest() == parquet["sha256"]

    # the suite's task inputs, listed as the version's dataset files
    version = sdk.llm.evals.get_suite_version(suite_id=eval_home.suite_id, version=1)
    inputs_id = version.dataset_file_ids[0]
    assert sdk.llm.files.get(file_id=inputs_id).bytes_ > 0

    # another org: 404 for every one of them, in the files API's error shape
    for file_id in (report_id, jsonl["file_id"], inputs_id):
        answer = httpx.get(f"{api}/api/v1/llm/files/{file_id}", headers=outsider)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == 404
    other, _ = _sdk(api, outsider["Authorization"].split()[1])
    with pytest.raises(mka1_errors.GetFileContentNotFoundError):
        other.llm.files.content(file_id=report_id)
    assert httpx.get(f"{api}/api/v1/llm/files/file_nope", headers=headers).status_code == 404
    assert runs.get_run(eval_home.catalog, run.id)["status"] == "completed"
