"""The three front doors end in the same state: cancelling a run through MKA1's API (the `meetkai-mka1`
SDK), Qianfan's StopEvalTask (the `qianfan` SDK, AK/SK signed) and the CLI (`runs cancel`, a subprocess)
cancels the eval run and its waiting Dagster runs alike; deleting a finished run (MKA1, `runs delete`) or a
suite (MKA1, `suites delete`) leaves nothing of it in the catalog, the lake or Dagster's partitions."""
import json
from contextlib import contextmanager

import dagster as dg
import httpx
from helpers import generated_folder, run_cli
from openai_server import FlakyOpenAI
from sqlalchemy import func, select

from eval_pipeline import service
from eval_pipeline.errors import NotFound
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.orchestration.sensors import queued_runs
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import RUN_TAG
from eval_pipeline.service.partitions import suite_partitions_def
from eval_pipeline.stores.catalog import tables as t
from resources import CatalogResource, LakeResource

ORG = "acme"  # the org `serving` gives the home's suite
LAKE_FOLDERS = ("generations", "grades", "metrics", "reports")


def _mka1(url: str, home):
    from mka1 import SDK

    return SDK(server_url=url, bearer_auth=service.create_key(home, ORG)["key"])


@contextmanager
def _qianfan(home, url):
    """The qianfan SDK's call_action pointed at `url` with a fresh AK/SK pair of the org."""
    import qianfan
    from qianfan.resources.console.utils import call_action

    pair = service.create_key(home, ORG, kind="aksk")
    config = qianfan.get_config()
    saved = (config.CONSOLE_API_BASE_URL, config.ACCESS_KEY, config.SECRET_KEY)
    config.CONSOLE_API_BASE_URL, config.ACCESS_KEY, config.SECRET_KEY = url, pair["access_key"], pair["secret_key"]
    try:
        yield lambda action, params: call_action("/v2/eval", action, params).body
    finally:
        config.CONSOLE_API_BASE_URL, config.ACCESS_KEY, config.SECRET_KEY = saved


def _instance(home) -> dg.DagsterInstance:
    """The home's Dagster instance: the one the server (in this process) and the CLI (DAGSTER_HOME
    unset, so the home's) both use."""
    instance = dagster_instance(home)
    assert instance.root_directory == str(home.settings.dagster_home)
    return instance


def _dagster_runs(instance, run_id: str) -> list[dg.DagsterRun]:
    return instance.get_runs(dg.RunsFilter(tags={RUN_TAG: run_id}))


def _launch_queued(instance) -> None:
    """What the daemon does with the queued eval runs: the `queued_runs` sensor marks them started and
    requests their Dagster runs, created in the instance and not yet started (no daemon or launcher here:
    a QUEUED run would need a code location's origin; the cancel treats NOT_STARTED and QUEUED alike)."""
    job = defs.resolve_job_def(GENERATION_JOB)
    with dg.build_sensor_context(instance=instance, resources={"catalog": CatalogResource(),
                                                                "lake": LakeResource()}) as ctx:
        result = queued_runs(ctx)
    for added in result.dynamic_partitions_requests:  # the model and task keys, added first
        instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))
    for request in result.run_requests:
        instance.create_run_for_job(job, tags=request.tags, status=dg.DagsterRunStatus.NOT_STARTED)


def _gone(home, run_id: str) -> bool:
    try:
        service.get_run(home, run_id)
    except NotFound:
        return True
    return False


def test_cancel_ends_the_same_through_every_door(eval_home, api):
    instance = _instance(eval_home)
    sdk = _mka1(api, eval_home)
    doors = ("mka1", "qianfan", "cli", "bystander")
    made = {door: service.create_run(eval_home, {"suite_id": eval_home.suite_id, "models": ["tiny"],
                                                 "name": f"via {door}"}, org_id=ORG)["id"] for door in doors}
    _launch_queued(instance)
    for door, run_id in made.items():  # each eval run is in Dagster's hands, its Dagster runs waiting
        assert service.get_run(eval_home, run_id)["status"] == "in_progress"
        waiting = _dagster_runs(instance, run_id)
        assert waiting and all(r.status == dg.DagsterRunStatus.NOT_STARTED for r in waiting), door

    answered = {"mka1": sdk.llm.evals.cancel_run(run_id=made["mka1"]).status}
    with _qianfan(eval_home, api) as call:
        stopped = call("StopEvalTask", {"taskId": made["qianfan"]})["result"]
    assert stopped["taskId"] == made["qianfan"]
    answered["qianfan"] = stopped["state"]
    out = run_cli(eval_home.settings.home, "runs", "cancel", made["cli"])
    assert out.returncode == 0, out.stderr[-3000:]
    answered["cli"] = json.loads(out.stdout)["status"]
    assert answered == {"mka1": "cancelled", "qianfan": "Stopped", "cli": "cancelled"}  # each door's word for it

    def end_state(run_id):
        run = service.get_run(eval_home, run_id, partitions=True)
        return {"status": run["status"], "cancelled_at": run["cancelled_at"] is not None,
                "partitions": sorted({p["status"] for p in run["partitions"]}),
                "dagster": sorted({r.status.value for r in _dagster_runs(instance, run_id)})}

    cancelled = {"status": "cancelled", "cancelled_at": True, "partitions": ["cancelled"],
                 "dagster": [dg.DagsterRunStatus.CANCELED.value]}
    states = {door: end_state(made[door]) for door in doors}
    assert states == {"mka1": cancelled, "qianfan": cancelled, "cli": cancelled,
                      # no door stopped another run's work
                      "bystander": {"status": "in_progress", "cancelled_at": False, "partitions": ["pending"],
                                    "dagster": [dg.DagsterRunStatus.NOT_STARTED.value]}}
    for door in ("mka1", "qianfan", "cli"):  # and each by id, as the brief's check reads it
        for dagster_run in _dagster_runs(instance, made[door]):
            assert instance.get_run_by_id(dagster_run.run_id).status == dg.DagsterRunStatus.CANCELED, door


def _finished_run(home, model: str) -> str:
    """A completed run with files in every lake folder: one generate_until task, generated against a
    loopback OpenAI-compatible endpoint (no engine), executed here as Dagster runs."""
    with home.catalog.session() as s:
        task_id = s.scalar(select(t.Task.id).where(t.Task.name == "ev_gen_a"))
    run = service.create_run(home, {"suite_id": home.suite_id, "models": [model], "task_ids": [task_id],
                                    "generation": {"max_gen_toks": 4, "max_retries": 0}}, org_id=ORG)
    done = service.execute_run(home, run["id"], defs.resolve_job_def(GENERATION_JOB))
    assert done["status"] == "completed", done["error"]
    return run["id"]


def test_delete_run_ends_the_same_through_mka1_and_the_cli(eval_home, api):
    instance = _instance(eval_home)
    with FlakyOpenAI() as server:
        service.add_model(eval_home, "remote", {"backend": "openai", "base_url": server.url})
        made = {door: _finished_run(eval_home, "remote") for door in ("mka1", "cli")}
    reports = {door: service.get_run(eval_home, run_id)["artifact_file_ids"] for door, run_id in made.items()}
    lake, key = eval_home.lake, service.create_key(eval_home, ORG)["key"]

    def state(door):
        run_id = made[door]
        got = httpx.get(f"{api}/api/v1/llm/evals/runs/{run_id}", headers={"Authorization": f"Bearer {key}"})
        with eval_home.catalog.session() as s:
            partitions = s.scalar(select(func.count()).where(t.RunPartition.run_id == run_id))
            report_files = s.scalar(select(func.count()).where(t.File.id.in_(reports[door])))
        return {"gone": _gone(eval_home, run_id), "http": got.status_code, "partition_rows": partitions,
                "report_file_rows": report_files,
                "lake_folders": [f for f in LAKE_FOLDERS if lake.fs.exists(f"{lake.root}/{f}/{run_id}")],
                "lake_files": len([p for p in lake.list() if run_id in p])}

    for door, run_id in made.items():  # there is something to delete everywhere
        before = state(door)
        assert (before["gone"], before["http"], before["lake_folders"]) == (False, 200, list(LAKE_FOLDERS)), door
        assert before["partition_rows"] and before["report_file_rows"] == len(reports[door]) > 0, door
        assert before["lake_files"] and _dagster_runs(instance, run_id), door

    deleted = _mka1(api, eval_home).llm.evals.delete_run(run_id=made["mka1"])
    assert (deleted.id, deleted.deleted) == (made["mka1"], True)
    out = run_cli(eval_home.settings.home, "runs", "delete", made["cli"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == {"id": made["cli"], "object": "eval.run.deleted", "deleted": True}

    gone = {"gone": True, "http": 404, "partition_rows": 0, "report_file_rows": 0, "lake_folders": [],
            "lake_files": 0}
    assert {door: state(door) for door in made} == {"mka1": gone, "cli": gone}


def test_delete_suite_ends_the_same_through_mka1_and_the_cli(eval_home, api, tmp_path):
    instance = _instance(eval_home)
    suites, suite_runs, samples = {}, {}, {}
    for door in ("mka1", "cli"):  # a suite of the org each, recorded in Dagster, with a finished (cancelled) run
        data = generated_folder(tmp_path / door, models=(f"org/{door}-model",))
        imported = service.import_historical(eval_home, {"source": {"type": "path", "url": str(data)},
                                                         "suite_name": f"deleted via {door}"}, org_id=ORG)
        suites[door] = imported.suite_id
        run = service.create_run(eval_home, {"suite_id": imported.suite_id, "models": ["tiny"]}, org_id=ORG)
        assert service.cancel_run(eval_home, run["id"], org_id=ORG)["status"] == "cancelled"
        suite_runs[door] = run["id"]
        with eval_home.catalog.session() as s:
            samples[door] = s.scalars(select(t.File.path).join(
                t.HistoricalRun, t.HistoricalRun.samples_file_id == t.File.id).where(
                t.HistoricalRun.suite_id == imported.suite_id)).all()
    key = service.create_key(eval_home, ORG)["key"]

    def state(door):
        suite_id = suites[door]
        try:
            service.get_suite(eval_home, suite_id)
            suite_gone = False
        except NotFound:
            suite_gone = True
        got = httpx.get(f"{api}/api/v1/llm/evals/suites/{suite_id}", headers={"Authorization": f"Bearer {key}"})
        with eval_home.catalog.session() as s:
            historical = s.scalar(select(func.count()).where(t.HistoricalRun.suite_id == suite_id))
        return {"suite_gone": suite_gone, "http": got.status_code, "historical_runs": historical,
                "run_gone": _gone(eval_home, suite_runs[door]),
                "dagster_partition": instance.has_dynamic_partition(suite_partitions_def.name, suite_id),
                "samples_files": len([p for p in samples[door] if eval_home.lake.exists(p)])}

    for door in suites:  # there is something to delete everywhere
        before = state(door)
        assert before["historical_runs"] and before["samples_files"] == len(samples[door]) > 0, door
        assert {k: before[k] for k in ("suite_gone", "http", "run_gone", "dagster_partition")} == {
            "suite_gone": False, "http": 200, "run_gone": False, "dagster_partition": True}, door

    deleted = _mka1(api, eval_home).llm.evals.delete_suite(suite_id=suites["mka1"])
    assert (deleted.id, deleted.deleted, deleted.deleted_runs) == (suites["mka1"], True, 1)
    assert state("cli")["dagster_partition"] and not state("cli")["suite_gone"]  # the other suite is untouched
    out = run_cli(eval_home.settings.home, "suites", "delete", suites["cli"], "--org", ORG)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == {"id": suites["cli"], "object": "eval.suite.deleted", "deleted": True,
                                      "deleted_runs": 1}

    gone = {"suite_gone": True, "http": 404, "historical_runs": 0, "run_gone": True, "dagster_partition": False,
            "samples_files": 0}
    assert {door: state(door) for door in suites} == {"mka1": gone, "cli": gone}
    assert service.get_suite(eval_home, eval_home.suite_id)["id"] == eval_home.suite_id  # the home's suite stays
