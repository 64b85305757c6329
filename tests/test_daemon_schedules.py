"""A real `dagster-daemon` on a PostgreSQL-backed instance (catalog in PostgreSQL too) ticks an interval
schedule (60 s): its sensors make the eval run, launch its Dagster run (a run worker process loading the
tiny model in vLLM) and complete it. The daemon is killed (SIGKILL) just before a tick and started again
after it; every tick still makes at most one run, and the work goes on."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cli_env
from services import create_database, drop_database
from sqlalchemy import select

from eval_pipeline import service
from eval_pipeline.stores.catalog import tables as t

REPO = Path(__file__).resolve().parents[1]
DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))


def _start(home, env, log: Path) -> subprocess.Popen:
    return subprocess.Popen([DAEMON, "run", "-w", str(REPO / "workspace.yaml")], cwd=REPO, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _crash(proc: subprocess.Popen) -> None:
    """SIGKILL the daemon alone, no clean shutdown; the run workers it launched go on."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _kill_all(groups: list[int]) -> None:
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait(what, predicate, timeout: float, log: Path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}; daemon log:\n{log.read_text()[-4000:]}")


@pytest.mark.parametrize("eval_home", ["postgresql"], indirect=True)
def test_the_daemon_ticks_a_schedule_and_a_restart_never_makes_a_tick_run_twice(eval_home, pg_admin_url, tmp_path):
    dagster_url = create_database(pg_admin_url)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: \"{dagster_url}\"\n"
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "telemetry:\n  enabled: false\n")
    env = cli_env(eval_home.settings.home, EVAL_PIPELINE_DATABASE_URL=eval_home.catalog.url,
                  DAGSTER_HOME=str(dagster_home))
    with eval_home.catalog.session() as s:
        task_id = s.scalar(select(t.Task.id).where(t.Task.name == "ev_gen_a"))
    sched = service.create_schedule(eval_home, {
        "name": "every minute", "suite_id": eval_home.suite_id, "interval_seconds": 60, "overlap_policy": "allow_all",
        "run": {"models": ["tiny"], "task_ids": [task_id], "max_samples_per_task": 3,
                "generation": {"max_gen_toks": 4}}}, org_id="org_default", team_id="team")
    log = tmp_path / "daemon.log"
    daemon = _start(eval_home, env, log)
    groups = [daemon.pid]
    try:
        def ticks():
            return [tk for tk in service.schedule_ticks(eval_home, sched["id"]) if tk["status"] == "created"]

        _wait("the first tick's run", ticks, 150, log)
        # kill the daemon a few seconds before the next tick, and start it again after it
        time.sleep(max(0.0, 60 - time.time() % 60 - 4))
        _crash(daemon)
        killed_at = time.time()
        time.sleep(max(0.0, 60 - time.time() % 60 + 3))
        daemon = _start(eval_home, env, log)
        groups.append(daemon.pid)
        missed = _wait("the tick the daemon missed",
                       lambda: [tk for tk in ticks() if tk["tick_at"] > killed_at], 120, log)[0]
        _wait("a scheduled run to complete", lambda: any(
            r["status"] == "completed" for r in service.schedule_runs(eval_home, sched["id"], limit=100)), 420, log)
    finally:
        _kill_all(groups)
        drop_database(pg_admin_url, dagster_url)
    runs = service.schedule_runs(eval_home, sched["id"], limit=100)
    made_by = [r["metadata"]["schedule_tick"] for r in runs]
    assert len(made_by) == len(set(made_by)), made_by  # no tick made two runs
    ticks_seen = service.schedule_ticks(eval_home, sched["id"])
    assert len({(tk["kind"], tk["tick_at"]) for tk in ticks_seen}) == len(ticks_seen)
    assert {tk["run_id"] for tk in ticks_seen if tk["run_id"]} == {r["id"] for r in runs}
    # the first tick's run and the missed tick's (later ticks may or may not have come by now)
    assert len(runs) >= 2 and missed["run_id"] in {r["id"] for r in runs}
    completed = next(r for r in runs if r["status"] == "completed")
    assert completed["request_counts"]["completed"] == 3 and completed["metrics"]["tiny"]
