"""Qianfan's eval actions driven by the real `qianfan` SDK (`call_action`, bce-auth-v1 signatures from
an AK/SK pair), and a raw signed request with a wrong secret, a stale date or no signature."""
import json
import time
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import select, update

from eval_pipeline import runs
from eval_pipeline.api.qianfan import bce_signature
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.keys import create_key, master_secret


@contextmanager
def _qianfan(home, url):
    """The qianfan SDK's call_action pointed at `url` with a fresh AK/SK pair of org acme."""
    import qianfan
    from qianfan.resources.console.utils import call_action

    pair = create_key(home.catalog, "acme", kind="aksk", master=master_secret(home.settings.home))
    config = qianfan.get_config()
    saved = (config.CONSOLE_API_BASE_URL, config.ACCESS_KEY, config.SECRET_KEY)
    config.CONSOLE_API_BASE_URL, config.ACCESS_KEY, config.SECRET_KEY = url, pair["access_key"], pair["secret_key"]

    def call(action, params):
        return call_action("/v2/eval", action, params).body

    try:
        yield call, pair
    finally:
        config.CONSOLE_API_BASE_URL, config.ACCESS_KEY, config.SECRET_KEY = saved


@pytest.fixture
def qianfan_sdk(eval_home, api):
    with _qianfan(eval_home, api) as sdk:
        yield sdk


@pytest.fixture
def qianfan_executing(eval_home, executing_api):
    """Against a server with its own worker (`serve --execute`): queued exports run without a daemon."""
    with _qianfan(eval_home, executing_api) as sdk:
        yield sdk


def _runs(home, n, org="acme"):
    ids = []
    for i in range(n):
        run = runs.create_run(home.catalog, home.lake, {"suite_id": home.suite_id, "models": ["tiny"],
                                                         "name": f"nightly {i}"}, org_id=org)
        ids.append(run["id"])
        time.sleep(0.002)
    return ids


def test_describe_eval_tasks_filters_pages_and_caps(eval_home, qianfan_sdk):
    call, _ = qianfan_sdk
    ids = _runs(eval_home, 12)
    (theirs,) = _runs(eval_home, 1)
    with eval_home.catalog.session() as s:  # another org's run never shows
        s.execute(update(t.Run).where(t.Run.id == theirs).values(org_id="globex"))
    page1 = call("DescribeEvalTasks", {"evalType": "auto", "maxKeys": 5})["result"]
    assert [x["taskId"] for x in page1["evalTaskList"]] == ids[:5]
    assert page1["pageInfo"] == {"marker": "", "maxKeys": 5, "isTruncated": True, "nextMarker": ids[5]}
    page2 = call("DescribeEvalTasks", {"evalType": "auto", "maxKeys": 5, "marker": ids[5]})["result"]
    assert [x["taskId"] for x in page2["evalTaskList"]] == ids[5:10]
    page3 = call("DescribeEvalTasks", {"evalType": "auto", "maxKeys": 5, "marker": ids[10]})["result"]
    assert [x["taskId"] for x in page3["evalTaskList"]] == ids[10:] and not page3["pageInfo"]["isTruncated"]
    everything = call("DescribeEvalTasks", {"evalType": "auto", "maxKeys": 1000})["result"]
    assert everything["pageInfo"]["maxKeys"] == 100 and len(everything["evalTaskList"]) == 12
    default = call("DescribeEvalTasks", {"evalType": "auto"})["result"]
    assert len(default["evalTaskList"]) == 10
    newest = call("DescribeEvalTasks", {"evalType": "auto", "pageReverse": True, "maxKeys": 2})["result"]
    assert [x["taskId"] for x in newest["evalTaskList"]] == [ids[11], ids[10]]
    fuzzy = call("DescribeEvalTasks", {"evalType": "auto", "keyFilter": "NIGHTLY 1"})["result"]
    assert {x["taskName"] for x in fuzzy["evalTaskList"]} == {"nightly 1", "nightly 10", "nightly 11"}
    by_id = call("DescribeEvalTasks", {"evalType": "auto", "keyFilter": ids[3][-8:]})["result"]
    assert [x["taskId"] for x in by_id["evalTaskList"]] == [ids[3]]
    by_model = call("DescribeEvalTasks", {"evalType": "auto", "keyFilter": "tiny", "maxKeys": 100})["result"]
    assert len(by_model["evalTaskList"]) == 12
    item = page1["evalTaskList"][0]
    assert item["evalType"] == "auto" and item["evalMode"] == "rule" and len(item["createTime"]) == 19
    assert call("DescribeEvalTasks", {"evalType": "manual"})["result"]["evalTaskList"] == []
    from eval_pipeline.suites.tasks import set_eval_mode

    with eval_home.catalog.session() as s:
        manual_task = s.scalar(select(t.Task.id).where(t.Task.name == "ev_gen_b"))
    set_eval_mode(eval_home.catalog, manual_task, "manual")
    manual = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"]},
                             org_id="acme")
    listed = call("DescribeEvalTasks", {"evalType": "manual"})["result"]["evalTaskList"]
    assert [(x["taskId"], x["evalType"], x["evalMode"]) for x in listed] == [(manual["id"], "manual", "manual")]
    stopped = call("StopEvalTask", {"taskId": ids[0]})["result"]
    assert stopped == {"taskId": ids[0], "state": "Stopped"}
    assert call("DescribeEvalTask", {"taskId": ids[0]})["result"]["state"] == "Stopped"
    # the search follows renames and deletes; wildcards in a filter are literal; short filters work too

    def names(key_filter):
        found = call("DescribeEvalTasks", {"evalType": "auto", "keyFilter": key_filter, "maxKeys": 100})["result"]
        return {x["taskName"] for x in found["evalTaskList"]}

    runs.update_run(eval_home.catalog, ids[2], {"name": "Renamed run"})
    assert names("renamed") == {"Renamed run"} and "nightly 2" not in names("nightly 2")
    runs.delete_run(eval_home.catalog, eval_home.lake, ids[0])
    assert names(ids[0][-10:]) == set() and names("nightly 0") == set()
    assert names("nightly%1") == set() and names("nightly_1") == set()
    short = names("1")  # under 3 characters: no trigram, the index scan (ids hold 1s too)
    assert {f"nightly {i}" for i in (1, 10, 11)} <= short and "nightly 0" not in short


def test_export_task_to_system_storage_until_the_bundle_exists(eval_home, qianfan_executing):
    from eval_pipeline.exports.tasks import bundle_location, verify_bundle

    call, _ = qianfan_executing
    with eval_home.catalog.session() as s:
        task_id = s.scalar(select(t.Task.id).where(t.Task.name == "ev_gen_a"))
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"],
                                                              "task_ids": [task_id],
                                                              "generation": {"max_gen_toks": 4}}, org_id="acme")
    for _ in range(1200):  # queued: the server's worker generates, grades and completes it
        if call("DescribeEvalTask", {"taskId": run["id"]})["result"]["state"] not in ("Pending", "Running"):
            break
        time.sleep(0.2)
    assert runs.get_run(eval_home.catalog, run["id"])["status"] == "completed"
    made = call("CreateEvalResultExportTask", {"evalId": run["id"], "storageType": "sysStorage",
                                               "exportContent": ["prompt", "prediction", "metrics"]})["result"]
    for _ in range(600):  # the server's worker runs the export job (Dagster, in process)
        state = call("DescribeEvalResultExportTask", {"taskId": made["taskId"]})["result"]
        if state["state"] in ("Succeeded", "Failed"):
            break
        time.sleep(0.1)
    assert state["state"] == "Succeeded" and state["downloadUrl"] and state["evalId"] == run["id"]
    assert verify_bundle(*bundle_location(eval_home.catalog, eval_home.lake, made["taskId"])) == []
    from qianfan.errors import RequestError

    with pytest.raises(RequestError, match="status code 400"):  # BOS needs a bucket
        call("CreateEvalResultExportTask", {"evalId": run["id"], "storageType": "BOS", "exportContent": ["prompt"]})


def _signed(url, ak, sk, body, stamp=None, action="DescribeEvalTasks"):
    stamp = stamp or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    host = url.split("//", 1)[1]
    headers = {"host": host, "content-type": "application/json", "x-bce-date": stamp}
    prefix = f"bce-auth-v1/{ak}/{stamp}/300"
    sig = bce_signature(sk, prefix, "POST", "/v2/eval", {"Action": action}, headers, sorted(headers))
    return httpx.post(f"{url}/v2/eval?Action={action}", content=json.dumps(body),
                      headers={**headers, "Authorization": f"{prefix}/{';'.join(sorted(headers))}/{sig}"})


def test_signatures_are_checked(eval_home, qianfan_sdk, api):
    _, pair = qianfan_sdk
    ok = _signed(api, pair["access_key"], pair["secret_key"], {"evalType": "auto"})
    assert ok.status_code == 200 and "requestId" in ok.json() and ok.json()["result"]["evalTaskList"] == []
    wrong = _signed(api, pair["access_key"], "0" * 64, {"evalType": "auto"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "SignatureDoesNotMatch"
    stale = _signed(api, pair["access_key"], pair["secret_key"], {"evalType": "auto"},
                    stamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600)))
    assert stale.status_code == 401 and stale.json()["code"] == "RequestExpired"
    unsigned = httpx.post(f"{api}/v2/eval?Action=DescribeEvalTasks", json={"evalType": "auto"})
    assert unsigned.status_code == 401 and set(unsigned.json()) == {"requestId", "code", "message"}
    bad = _signed(api, pair["access_key"], pair["secret_key"], {"evalType": "sometimes"})
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidParameter"
    unknown = _signed(api, pair["access_key"], pair["secret_key"], {}, action="DropEverything")
    assert unknown.status_code == 400 and unknown.json()["code"] == "InvalidAction"
    with eval_home.catalog.session() as s:
        s.execute(update(t.ApiKey).values(revoked_at=1))
    assert _signed(api, pair["access_key"], pair["secret_key"], {"evalType": "auto"}).status_code == 401
    # the secret key is derived, never stored
    home = eval_home.settings.home
    assert not any(pair["secret_key"].encode() in p.read_bytes() for p in home.rglob("*") if p.is_file())
