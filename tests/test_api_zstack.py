"""ZStack's model-evaluation task PUT and GETs over raw httpx, with `Authorization: OAuth <key>`."""
import dagster as dg
import httpx
import pytest

from eval_pipeline import runs
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.service.launching import execute_in_process
from eval_pipeline.stores.keys import create_key

FIELDS = {"uuid", "name", "type", "description", "percentage", "opaque", "status", "modelServiceGroupUuid",
          "evaluatedServiceGroupUuid", "datasetUuid", "limits", "maxNewTokens", "topK", "temperature", "topP",
          "prompt", "repetitionPenalty", "maxLength", "model", "url", "parallel", "logEveryQuery", "api",
          "requestHeaders", "connectTimeout", "readTimeout", "totalScore", "endTime", "createDate", "lastOpDate"}


def test_put_and_get_a_task(eval_home, api, quiet_run_config):
    key = create_key(eval_home.catalog, "acme")["key"]
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "max_samples_per_task": 3,
        "generation": {"max_gen_toks": 5, "top_k": 4, "temperature": 0.0, "instructions": "Be brief."}},
        org_id="acme")
    execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
    url, auth = f"{api}/zstack/v1/model-evaluation-tasks", {"Authorization": f"OAuth {key}"}
    put = httpx.put(f"{url}/{run['id']}", headers=auth, json={
        "updateModelEvaluationTask": {"name": "renamed", "description": "after review"},
        "systemTags": ["tier::gold"], "userTags": ["team-a"]})
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["success"] is True and body["error"] is None
    inv = body["inventory"]
    assert FIELDS <= set(inv) and inv["uuid"] == run["id"] and inv["name"] == "renamed"
    assert inv["description"] == "after review" and inv["status"] == "completed" and inv["percentage"] == 100
    assert (inv["maxNewTokens"], inv["topK"], inv["temperature"], inv["prompt"], inv["limits"]) == (
        5, 4, 0.0, "Be brief.", 3)
    done = runs.get_run(eval_home.catalog, run["id"])
    firsts = [next(iter(m.values())) for tasks in done["metrics"].values() for m in tasks.values()]
    # sample-weighted over each model and task's first metric
    expected = sum(f["value"] * f["n"] for f in firsts) / sum(f["n"] for f in firsts)
    assert inv["totalScore"] == pytest.approx(expected, abs=1e-12) and inv["endTime"] and inv["maxLength"] == 256
    assert (done["name"], done["system_tags"], done["user_tags"]) == ("renamed", ["tier::gold"], ["team-a"])
    got = httpx.get(f"{url}/{run['id']}", headers=auth).json()
    assert got["inventory"] == inv
    listed = httpx.get(url, headers=auth).json()
    assert [x["uuid"] for x in listed["inventories"]] == [run["id"]]
    # errors keep the envelope: bad input 400, another org's or unknown task 404, no token 401
    bad = httpx.put(f"{url}/{run['id']}", headers=auth, json={"updateModelEvaluationTask": {"name": ""}})
    assert bad.status_code == 400 and bad.json()["success"] is False and "name" in bad.json()["error"]["details"]
    assert httpx.put(f"{url}/{run['id']}", headers=auth, json={"name": "x"}).status_code == 400
    other = {"Authorization": f"OAuth {create_key(eval_home.catalog, 'globex')['key']}"}
    assert httpx.get(f"{url}/{run['id']}", headers=other).status_code == 404
    assert httpx.get(f"{url}/{run['id']}").status_code == 401
    assert httpx.get(f"{url}/{run['id']}", headers={"Authorization": f"Bearer {key}"}).status_code == 401
