"""`deploy/stack` on loopback, every part real: a PostgreSQL server of the test's own, Redis,
dagster-webserver, dagster-daemon, a gRPC code server, Celery workers on the queues gpu (two, the gpu pool
limited to one step at a time) and default, and the API server. An eval run created through the API runs its
generation steps on the gpu workers and every other step on the default worker; a nightly schedule ticks on
the stack's daemon; a gpu worker killed mid-partition fails the run and `runs resume` completes it, as does
a killed worker of the queue `runs` (the Dagster run workers); a cancel interrupts the run's run worker,
which records its Dagster run canceled; a killed daemon is restarted by `up` and launches a run queued
meanwhile once; a PostgreSQL restart mid-run leaves no run stuck; `down` leaves no process of the stack
alive."""
import json
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import httpx
import pytest
import redis
from helpers import EVAL_TASKS, SyntheticTask, cli_command, cli_env, generated_folder
from services import ThrowawayPostgres, free_port
from sqlalchemy import select

from eval_pipeline.deployment import stack_layout
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.keys import create_key
from eval_pipeline.stores.lake import Lake

REPO = Path(__file__).resolve().parents[1]
STACK = str(REPO / "deploy" / "stack")
TASK_NAMES = ("ev_mc_a", "ev_gen_a", "ev_mc_b")


def _stack(env: dict, *args: str, timeout: float = 600) -> dict:
    done = subprocess.run([STACK, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def _session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


class Stack:
    """A running stack and what the tests need of it."""

    def __init__(self, env, layout, status, catalog, lake, suite_id, key):
        self.env, self.layout, self.status = env, layout, status
        self.catalog, self.lake, self.suite_id, self.key = catalog, lake, suite_id, key

    @property
    def api(self) -> str:
        return self.layout.api_url

    def pid(self, name: str) -> int:
        return next(p["pid"] for p in self.status["processes"] if p["name"] == name)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.layout.dagster_home))

    def get_run(self, run_id: str) -> dict:
        for _ in range(30):
            response = httpx.get(f"{self.api}/api/v1/llm/evals/runs/{run_id}",
                                 headers={"Authorization": f"Bearer {self.key}"}, timeout=10)
            if response.status_code != 503:  # 503: the catalog's server is restarting
                break
            time.sleep(1)
        assert response.status_code == 200, response.text
        return response.json()

    def explain(self, run_id: str) -> str:
        """The eval run's error and its Dagster runs' failure messages, for an assertion's message."""
        out = [json.dumps(self.get_run(run_id).get("error"))]
        instance = self.instance()
        for rec in instance.get_run_records(dg.RunsFilter(tags={"eval_pipeline/run_id": run_id})):
            for entry in instance.all_logs(rec.dagster_run.run_id):
                ev = entry.dagster_event
                if ev and ev.event_type_value in ("STEP_FAILURE", "RUN_FAILURE", "ENGINE_EVENT"):
                    error = getattr(ev.event_specific_data, "error", None)
                    if error or ev.event_type_value != "ENGINE_EVENT":
                        out.append(f"{ev.event_type_value} {ev.step_key}: {ev.message}\n"
                                   f"{error.to_string() if error else ''}")
        return "\n".join(out)[-6000:]

    def wait_run(self, run_id: str, timeout: float) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            run = self.get_run(run_id)
            if run["status"] in ("completed", "failed", "cancelled"):
                return run
            time.sleep(2)
        logs = "\n".join(f"== {p}\n" + Path(p).read_text()[-3000:] for p in
                         sorted(str(x) for x in (self.layout.dir / "logs").glob("*.log")))
        pytest.fail(f"eval run {run_id} did not end in {timeout} s: {self.get_run(run_id)['status']}\n{logs}")


@pytest.fixture(scope="module")
def postgres():
    server = ThrowawayPostgres()
    url = server.start().replace("postgresql+psycopg2://", "postgresql://")
    yield server, url
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres, redis_url, tiny_model):
    from eval_pipeline.demo.tiny_model import build_tiny_model
    from eval_pipeline.historical.importer import import_results
    from eval_pipeline.models.registry import add_model

    root = tmp_path_factory.mktemp("stack")
    home = root / "home"
    home.mkdir()
    env = cli_env(home, EVAL_PIPELINE_STACK_POSTGRES_URL=postgres[1],
                  EVAL_PIPELINE_STACK_REDIS_URL=redis_url, EVAL_PIPELINE_STACK_GPU_WORKERS="2",
                  EVAL_PIPELINE_STACK_GPU_POOL_LIMIT="1", EVAL_PIPELINE_STACK_DEFAULT_WORKERS="1",
                  EVAL_PIPELINE_STACK_UI_PORT=str(free_port()), EVAL_PIPELINE_STACK_API_PORT=str(free_port()),
                  EVAL_PIPELINE_STACK_CODE_PORT=str(free_port()), EVAL_PIPELINE_MAX_ENGINES="2")
    layout = stack_layout(env)
    # one nightly tick, four minutes from now: the daemon must find it in the code server's schedules
    tick = datetime.now(timezone.utc) + timedelta(minutes=4)
    (home / "nightly.yaml").write_text(json.dumps({"nightly": [{
        "name": "stack_nightly", "suites": ["eval suite"], "models": ["tiny-a"],
        "cron": f"{tick.minute} {tick.hour} * * *",
        "run": {"max_samples_per_task": 2, "generation": {"max_gen_toks": 4}}}]}))
    status = _stack(env, "up")
    catalog = Catalog(layout.database_url("catalog"))
    lake = Lake(str(home / "lake"))
    try:
        data = generated_folder(root / "data", models=("org/model-a",), tasks=EVAL_TASKS)
        suite_id = import_results(catalog, lake, {"source": {"type": "path", "url": str(data)},
                                                  "suite_name": "eval suite"}).suite_id
        add_model(catalog, "tiny-a", {"backend": "vllm", "path": str(tiny_model), "dtype": "float32",
                                      "max_model_len": 256})
        add_model(catalog, "tiny-b", {"backend": "vllm", "path": str(build_tiny_model(root / "tiny-b", seed=1)),
                                      "dtype": "float32", "max_model_len": 256})
        yield Stack(env, layout, status, catalog, lake, suite_id, create_key(catalog, "org_default")["key"])
    finally:
        _stack(env, "down")
        catalog.dispose()
        client = redis.Redis.from_url(layout.redis_database_url)
        for key in client.scan_iter(match=layout.key_prefix + "*"):
            client.delete(key)


def _steps(instance: dg.DagsterInstance, run_ids: list[str]) -> list[dict]:
    """Each executed step: its run, key, Celery worker, start and end."""
    out = []
    for run_id in run_ids:
        starts, ends, workers = {}, {}, {}
        for rec in instance.all_logs(run_id):
            ev = rec.dagster_event
            if ev is None or ev.step_key is None:
                continue
            if ev.event_type_value == "STEP_START":
                starts[ev.step_key] = rec.timestamp
            elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                ends[ev.step_key] = rec.timestamp
            elif ev.event_type_value == "ENGINE_EVENT" and "in celery worker" in (ev.message or ""):
                workers[ev.step_key] = ev.event_specific_data.metadata["Celery worker"].value
        out += [{"run": run_id, "step": k, "worker": workers.get(k), "start": starts[k], "end": ends.get(k)}
                for k in starts]
    return out


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    most = now = 0
    for _, delta in edges:
        now += delta
        most = max(most, now)
    return most


def test_an_api_run_generates_on_the_gpu_workers_and_grades_on_the_default_one(stack):
    from mka1 import SDK

    with stack.catalog.session() as s:
        task_ids = [s.scalar(select(t.Task.id).where(t.Task.name == n)) for n in TASK_NAMES]
    sdk = SDK(server_url=stack.api, bearer_auth=stack.key)
    created = sdk.llm.evals.create_run(suite_id=stack.suite_id, models=["tiny-a", "tiny-b"], task_ids=task_ids,
                                       generation={"max_gen_toks": 6, "temperature": 0.0})
    assert created.status == "queued"
    run = stack.wait_run(created.id, 600)
    assert run["status"] == "completed", stack.explain(created.id)
    assert run["request_counts"]["failed"] == 0 and set(run["metrics"]) == {"tiny-a", "tiny-b"}

    instance = stack.instance()
    dagster_runs = instance.get_run_records(dg.RunsFilter(tags={"eval_pipeline/run_id": created.id}))
    assert len(dagster_runs) == 2  # one per model: its three tasks are one contiguous block
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in dagster_runs)
    steps = _steps(instance, [r.dagster_run.run_id for r in dagster_runs])
    assert {s["step"] for s in steps} >= {"generations", "grades", "metrics"}
    # the checks are steps of their own, those reading the same data one step (a multi-asset check)
    assert {s["step"] for s in steps} >= {"generation_checks", "grades_grades_valid", "metrics_checks"}
    for step in steps:
        queue = "gpu" if step["step"] == "generations" else "default"
        assert step["worker"] and step["worker"].startswith(f"worker-{queue}-"), step

    # each Dagster run's run worker was a Celery task on the queue `runs`, in a process of the runs worker
    for record in dagster_runs:
        assert record.dagster_run.tags.get("dagster-celery/task_id"), record.dagster_run.tags
        started = [e for e in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
                   if e.message.startswith("Started process for run")]
        pid = int(started[0].dagster_event.engine_event_data.metadata["pid"].value)
        assert _session_of(pid) == stack.pid("worker-runs")

    gpu_sessions = {stack.pid(f"worker-gpu-{i}") for i in (1, 2)}
    default_session = stack.pid("worker-default-1")
    seen_gpu_workers = set()
    for asset in ("generations", "grades", "metrics"):
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
        mats = [r.asset_materialization for r in records
                if r.asset_materialization.metadata["eval_run_id"].value == created.id]
        assert len(mats) == 6, asset  # 2 models x 3 tasks, one materialisation each
        for mat in mats:
            host, pid = mat.metadata["worker"].value.rsplit(":", 1)
            if asset == "generations":
                assert mat.metadata["queue"].value == "gpu" and _session_of(int(pid)) in gpu_sessions
                # the engine loaded once per (eval run, model, worker): the block's later tasks reuse it
                assert mat.metadata["engine_loads"].value == 1
                seen_gpu_workers.add(pid)
            else:
                assert mat.metadata["queue"].value == "default" and _session_of(int(pid)) == default_session

    # cost per model and in total in the API's overview: the CPU build holds no GPU
    overview = httpx.get(f"{stack.api}/api/v1/llm/evals/runs/{created.id}/overview",
                         headers={"Authorization": f"Bearer {stack.key}"}, timeout=10).json()
    cost = overview["cost"]
    assert set(cost["by_model"]) == {"tiny-a", "tiny-b"} and cost["gpu_seconds"] == 0
    assert all(0 < c["engine_seconds"] <= c["wall_seconds"] and c["output_tokens"] > 0
               for c in cost["by_model"].values())
    assert cost["input_tokens"] == overview["tokens"]["input"]

    # the gpu pool's limit (1) held across both Dagster runs, though two gpu workers were free
    gen = [(s["start"], s["end"]) for s in _steps(instance, [r.dagster_run.run_id for r in instance.get_run_records()])
           if s["step"] == "generations" and s["end"]]
    assert len(gen) >= 2 and _max_overlap(gen) == 1
    # and the run whose gpu step had to wait was launched already (op_granularity_run_buffer), waiting in
    # its run worker for the slot rather than in the queue for the next dequeue
    ours = sorted((s["start"], s["end"], s["run"]) for s in steps if s["step"] == "generations")
    waiting = next(r for r in dagster_runs if r.dagster_run.run_id == ours[1][2])
    assert waiting.start_time is not None and waiting.start_time < ours[0][1], (waiting.start_time, ours)


def test_a_nightly_schedule_ticks_on_the_stacks_daemon_and_its_run_completes(stack):
    deadline = time.time() + 480
    while time.time() < deadline:
        with stack.catalog.session() as s:
            nightly = s.scalars(select(t.Run).where(t.Run.origin.like("nightly:stack_nightly:%"))).all()
        if nightly:
            break
        time.sleep(3)
    assert len(nightly) == 1, "the nightly tick made no eval run"
    run = stack.wait_run(nightly[0].id, 420)
    assert run["status"] == "completed" and run["models"] == ["tiny-a"], run
    assert run["request_counts"]["completed"] > 0 and run["request_counts"]["failed"] == 0


def _generation_worker(instance: dg.DagsterInstance, run_id: str) -> str:
    """The stack process name (worker-gpu-N) of the Celery worker that took the eval run's generations."""
    for rec in instance.get_run_records(dg.RunsFilter(tags={"eval_pipeline/run_id": run_id})):
        for step in _steps(instance, [rec.dagster_run.run_id]):
            if step["step"] == "generations" and step["worker"]:
                return step["worker"].rsplit("-", 1)[0]
    return ""


def _create_run(stack, body: dict) -> str:
    response = httpx.post(f"{stack.api}/api/v1/llm/evals/runs", json=body,
                          headers={"Authorization": f"Bearer {stack.key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _chunks(stack, run_id: str) -> int:
    with stack.catalog.session() as s:
        return sum(len(p.chunks) for p in s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)))


def _long_run_under_way(stack, tmp_path, model: str) -> str:
    """An eval run of one generate_until task of 600 docs (six chunks of 100, each some seconds of work),
    created through the API and waited for until its first chunk is written; its id."""
    from eval_pipeline.historical.importer import import_results

    data = generated_folder(tmp_path / "long", models=("org/model-a",),
                            tasks=[SyntheticTask("ev_long", "generate_until", 600)])
    suite_id = import_results(stack.catalog, stack.lake, {"source": {"type": "path", "url": str(data)},
                                                          "suite_name": f"long suite {tmp_path.name}"}).suite_id
    run_id = _create_run(stack, {"suite_id": suite_id, "models": [model], "max_workflow_sample_activities": 100,
                                 # a stop string the random model never writes: every request runs to 64 tokens
                                 "generation": {"max_gen_toks": 64, "temperature": 0.0, "until": ["\u0000"]}})
    deadline = time.time() + 300
    while time.time() < deadline and _chunks(stack, run_id) < 1:
        time.sleep(0.2)
    assert _chunks(stack, run_id) >= 1, stack.get_run(run_id)
    return run_id


def test_a_gpu_worker_killed_mid_partition_fails_the_run_and_resume_completes_it(stack, tmp_path):
    run_id = _long_run_under_way(stack, tmp_path, "tiny-b")
    instance = stack.instance()
    victim = _generation_worker(instance, run_id)
    assert victim.startswith("worker-gpu-")
    os.killpg(stack.pid(victim), signal.SIGKILL)  # the worker's whole session: wrapper, main and pool process
    written_before = _chunks(stack, run_id)
    assert written_before < 6, "the partition finished before the kill: make it longer"

    failed = stack.wait_run(run_id, 240)
    assert failed["status"] == "failed", failed
    (dagster_run,) = instance.get_run_records(dg.RunsFilter(tags={"eval_pipeline/run_id": run_id}))
    assert dagster_run.dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert "stopped answering" in failed["error"]["message"], failed["error"]  # the eval run says why
    with stack.catalog.session() as s:
        parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)).all()
    assert {p.status for p in parts} == {"pending"}  # released: a resume takes them up

    assert _stack(stack.env, "status")["up"] is False  # the killed worker is down; up starts it alone
    restarted = _stack(stack.env, "up")
    new_pid = next(p["pid"] for p in restarted["processes"] if p["name"] == victim)
    assert restarted["up"] and new_pid != stack.pid(victim)
    stack.status = restarted
    resumed = subprocess.run(cli_command("runs", "resume", run_id), env=stack.env, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    done = stack.wait_run(run_id, 420)
    assert done["status"] == "completed", done
    latest = instance.fetch_materializations(dg.AssetKey("generations"), limit=1).records[0].asset_materialization
    assert latest.metadata["eval_run_id"].value == run_id
    # what was written before the kill is kept: only the chunk in flight (and those after it) are generated again
    assert latest.metadata["chunks_skipped"].value >= written_before
    assert latest.metadata["chunks_skipped"].value + latest.metadata["chunks_written"].value == 6


def test_a_killed_runs_worker_fails_its_runs_through_run_monitoring_and_resume_completes_them(stack, tmp_path):
    run_id = _long_run_under_way(stack, tmp_path, "tiny-a")
    instance = stack.instance()
    os.killpg(stack.pid("worker-runs"), signal.SIGKILL)  # every run worker dies with it; the gpu step lives on
    # dagster-celery alone would read the task's state, still STARTED, as a live run worker for ever
    failed = stack.wait_run(run_id, 240)
    assert failed["status"] == "failed", failed
    (dagster_run,) = instance.get_run_records(dg.RunsFilter(tags={"eval_pipeline/run_id": run_id}))
    assert dagster_run.dagster_run.status == dg.DagsterRunStatus.FAILURE
    failure = [e for e in instance.all_logs(dagster_run.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
    assert failure and "did not answer" in failure[0].message, failure
    with stack.catalog.session() as s:
        parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)).all()
    # released, or generated to the end by the gpu step, which outlived its run worker: none left running
    assert {p.status for p in parts} <= {"pending", "done"}, [p.status for p in parts]

    stack.status = _stack(stack.env, "up")
    assert stack.status["up"]
    resumed = subprocess.run(cli_command("runs", "resume", run_id), env=stack.env, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    done = stack.wait_run(run_id, 420)
    assert done["status"] == "completed", done


def test_a_cancel_interrupts_the_run_worker_which_records_its_dagster_run_canceled(stack, tmp_path):
    run_id = _long_run_under_way(stack, tmp_path, "tiny-a")
    response = httpx.post(f"{stack.api}/api/v1/llm/evals/runs/{run_id}/cancel",
                          headers={"Authorization": f"Bearer {stack.key}"}, timeout=30)
    assert response.status_code == 200 and response.json()["status"] in ("cancelling", "cancelled"), response.text
    done = stack.wait_run(run_id, 120)  # the gpu step stops after its chunk in flight
    assert done["status"] == "cancelled", done
    with stack.catalog.session() as s:
        parts = s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)).all()
    assert "running" not in {p.status for p in parts}
    instance = stack.instance()
    (record,) = instance.get_run_records(dg.RunsFilter(tags={"eval_pipeline/run_id": run_id}))
    deadline = time.time() + 60
    while time.time() < deadline and instance.get_run_by_id(record.dagster_run.run_id).status != \
            dg.DagsterRunStatus.CANCELED:
        time.sleep(1)
    messages = [e.message for e in instance.all_logs(record.dagster_run.run_id)]
    # canceled by its run worker, not failed and not by the 180 s timeout: interrupted (it revokes its steps),
    # or, when the gpu step stopped for the cancel first, ending with a failed step, both seen as CANCELING
    assert instance.get_run_by_id(record.dagster_run.run_id).status == dg.DagsterRunStatus.CANCELED, messages
    assert _stack(stack.env, "status")["up"]


def test_a_killed_daemon_is_restarted_by_up_and_launches_a_run_queued_meanwhile_once(stack):
    os.killpg(stack.pid("daemon"), signal.SIGKILL)
    with stack.catalog.session() as s:
        task_id = s.scalar(select(t.Task.id).where(t.Task.name == "ev_mc_b"))
    run_id = _create_run(stack, {"suite_id": stack.suite_id, "models": ["tiny-a"], "task_ids": [task_id]})
    time.sleep(15)  # longer than the sensor's interval: with no daemon, nothing takes the run
    assert stack.get_run(run_id)["status"] == "queued"
    stack.status = _stack(stack.env, "up")
    assert stack.status["up"]
    done = stack.wait_run(run_id, 300)
    assert done["status"] == "completed", done
    time.sleep(12)  # one more sensor interval: a second launch would show now
    launched = stack.instance().get_run_records(dg.RunsFilter(tags={"eval_pipeline/run_id": run_id}))
    assert len(launched) == 1


def test_a_postgresql_restart_mid_run_leaves_no_run_stuck(stack, postgres, tmp_path):
    server, _ = postgres
    run_id = _long_run_under_way(stack, tmp_path, "tiny-a")
    data = os.path.join(server.dir, "data")
    # -l: the restarted server logs to its file, not to this pipe (which it would hold open)
    restarted = subprocess.run(server._as + [f"{server.bin}/pg_ctl", "-D", data, "-l", os.path.join(server.dir, "log"),
                                             "-m", "fast", "-w", "restart"], capture_output=True, text=True, timeout=60)
    assert restarted.returncode == 0, restarted.stderr
    end = stack.wait_run(run_id, 480)
    if end["status"] == "failed":  # a connection cut mid-transaction: failed, and saying why
        assert end.get("error") and end["error"].get("message"), end
        subprocess.run(cli_command("runs", "resume", run_id), env=stack.env, check=True, capture_output=True,
                       timeout=120)
        end = stack.wait_run(run_id, 420)
    assert end["status"] == "completed", end


def test_up_that_cannot_finish_stops_what_it_started(postgres, redis_url, tmp_path):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    env = cli_env(tmp_path / "home", EVAL_PIPELINE_STACK_POSTGRES_URL=postgres[1],
                  EVAL_PIPELINE_STACK_REDIS_URL=redis_url, EVAL_PIPELINE_STACK_CODE_PORT=str(free_port()),
                  EVAL_PIPELINE_STACK_UI_PORT=str(taken.getsockname()[1]),
                  EVAL_PIPELINE_STACK_API_PORT=str(free_port()))
    try:
        done = subprocess.run([STACK, "up"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "EVAL_PIPELINE_STACK_*_PORT" in done.stderr, done.stderr[-2000:]
        status = _stack(env, "status")
        assert not status["up"] and status["processes"] == [] and status["other_processes"] == 0
        code_server_log = Path(env["EVAL_PIPELINE_HOME"]) / "stack" / "logs" / "code-server.log"
        assert code_server_log.exists()  # it had started, and was stopped again
    finally:
        taken.close()
        _stack(env, "down")


def test_down_stops_every_process_of_the_stack_and_nothing_else(stack, tmp_path):
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        status = _stack(stack.env, "status")
        assert status["up"] and {p["name"] for p in status["processes"]} == {
            "code-server", "webserver", "daemon", "worker-gpu-1", "worker-gpu-2", "worker-default-1", "worker-runs",
            "api"}
        sessions = {p["pid"] for p in status["processes"]}
        stopped = _stack(stack.env, "down")
        assert set(stopped["stopped"]) | set(stopped["killed"]) >= sessions
        left = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) in sessions and fields[0] != "Z":
                    left.append(int(entry.name))
        assert left == []
        assert bystander.poll() is None  # not the stack's: untouched
        after = _stack(stack.env, "status")
        assert not after["up"] and not any(p["alive"] for p in after["processes"])
        assert os.path.exists(stack.layout.dagster_home / "dagster.yaml")  # down keeps the files
    finally:
        bystander.kill()
