"""Starting, finding and stopping a stack's processes.

Each process a stack starts leads a session of its own, and every process it starts in turn (Dagster run
workers, Celery's worker and pool processes) stays in that session. `down` and `status` find them in /proc
by session, so they stop what the stack started and nothing else. A session is matched only with
processes no older than its leader was when recorded (a pid reused after the whole session ended is
someone else's); processes also carry EVAL_PIPELINE_STACK=<ident> in their environment, which finds one
that left its session (Celery overwrites that memory with its process title, so it cannot be the only way).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx

from eval_pipeline import service
from eval_pipeline.deployment.configs import (
    check_home,
    create_databases,
    max_concurrent_runs,
    read_stack_file,
    write_configs,
    write_stack_file,
)
from eval_pipeline.deployment.layout import StackLayout
from eval_pipeline.errors import Conflict

MARK = "EVAL_PIPELINE_STACK"
READY_SECONDS = 180.0  # a code server loads every asset module; a worker imports Dagster and Celery
STOP_SECONDS = 20.0  # a Celery worker finishes its task on SIGTERM: after this it is killed


@dataclass(frozen=True)
class Spec:
    """One process of the stack: its name, command, extra environment and readiness probe."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[StackLayout, Path], bool]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _log_says(text: str) -> Callable[[StackLayout, Path], bool]:
    return lambda layout, log: log.exists() and text in log.read_text(errors="replace")


def specs(layout: StackLayout, paths: dict[str, Path]) -> list[Spec]:
    """The stack's processes in start order: code server, webserver, daemon, gpu and default Celery
    workers (concurrency 1 each: a worker process keeps its engines between steps), the Celery worker of
    the Dagster run workers (queue `runs`, a process per run allowed at once), the API server."""
    b, ws, celery = layout.bin_dir, str(paths["workspace"]), str(paths["celery"])
    out = [
        Spec("code-server", [str(b / "dagster"), "api", "grpc", "-m", "eval_pipeline.orchestration.definitions",
                             "-a", "defs", "-h", "127.0.0.1", "-p", str(layout.code_port),
                             "--location-name", "eval_pipeline"], {},
             lambda lo, _: _port_open(lo.code_port)),
        Spec("webserver", [str(b / "dagster-webserver"), "-w", ws, "-h", "127.0.0.1", "-p", str(layout.ui_port)], {},
             lambda lo, _: _http_ok(f"{lo.ui_url}/server_info")),
        Spec("daemon", [str(b / "dagster-daemon"), "run", "-w", ws], {},
             _log_says("Instance is configured with the following daemons")),
    ]
    gpus = {"gpu": {"EVAL_PIPELINE_WORKER_GPUS": str(layout.worker_gpus)}} if layout.worker_gpus is not None else {}
    for queue, count in (("gpu", layout.gpu_workers), ("default", layout.default_workers)):
        for i in range(1, count + 1):
            name = f"worker-{queue}-{i}"
            out.append(Spec(name, [str(b / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                                   "-y", celery, "-q", queue, "-n", f"{name}-{layout.ident}", "--",
                                   "--concurrency=1"],
                            {"EVAL_PIPELINE_WORKER_QUEUE": queue, **gpus.get(queue, {})},
                            _log_says(" ready.")))
    # each Dagster run's orchestration, in a process forked from one that has imported the code location
    runs = max_concurrent_runs(layout)
    out.append(Spec("worker-runs", [str(b / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                                    "-y", celery, "-q", "runs", "-i", "eval_pipeline.orchestration.definitions",
                                    "-n", f"worker-runs-{layout.ident}", "--", f"--concurrency={runs}"],
                    {"EVAL_PIPELINE_WORKER_QUEUE": "runs"}, _log_says(" ready.")))
    out.append(Spec("api", [str(b / "eval-pipeline"), "serve", "--host", "127.0.0.1", "--port", str(layout.api_port)],
                    {}, lambda lo, _: _http_ok(f"{lo.api_url}/healthz")))
    return out


def _environment(layout: StackLayout, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "EVAL_PIPELINE_HOME": str(layout.home), "DAGSTER_HOME": str(layout.dagster_home),
        "EVAL_PIPELINE_DATABASE_URL": layout.database_url("catalog"),
        "EVAL_PIPELINE_CELERY_CONFIG": str(layout.dir / "celery.yaml"),
        "PATH": f"{layout.bin_dir}{os.pathsep}{env.get('PATH', '')}",  # dagster-celery runs `celery`
        "GX_ANALYTICS_ENABLED": "false", MARK: layout.ident, **extra})
    return env


def _proc_stat(pid: str) -> tuple[str, int, int]:
    """(state, session id, start time in clock ticks after boot) of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[3]), int(fields[19])


def started_at(pid: int) -> int:
    """A process's start time in clock ticks after boot (what a pid is recorded with)."""
    return _proc_stat(str(pid))[2]


def stack_pids(ident: str, leaders: dict[int, int]) -> list[int]:
    """Live processes (not zombies) of the stack: in the session of a recorded leader (pid -> start time)
    and no older than it, or carrying the stack's mark in their environment."""
    needle = f"{MARK}={ident}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state, session, start = _proc_stat(entry.name)
            if state == "Z":
                continue
            ours = session in leaders and start >= leaders[session]
            if ours or needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to read
            continue
    return found


def _leaders(record: dict[str, Any]) -> dict[int, int]:
    return {p["pid"]: p.get("started", 0) for p in record.get("processes", [])}


def stack_status(layout: StackLayout) -> dict[str, Any]:
    """{home, up, api_url, ui_url, processes: [{name, pid, alive, log}], other_processes}: `up` when every
    process started is alive; other_processes counts marked processes they started (run workers, pool
    children)."""
    record = read_stack_file(layout)
    live = set(stack_pids(layout.ident, _leaders(record)))
    procs = [{"name": p["name"], "pid": p["pid"], "alive": p["pid"] in live, "log": p["log"]}
             for p in record.get("processes", [])]
    return {"home": str(layout.home), "up": bool(procs) and all(p["alive"] for p in procs),
            "api_url": layout.api_url, "ui_url": layout.ui_url, "processes": procs,
            "other_processes": len(live - {p["pid"] for p in procs})}


def stack_up(layout: StackLayout, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Start the stack in `layout.home`, or the processes of it that are not alive; returns its status.
    A fresh home gets its databases, configs, migrated catalog and Dagster storage, and the gpu pool limit
    first. Raises Conflict for a home holding other state, a port taken, a server not reachable, or a
    process that does not become ready (its log named; every process started is stopped again)."""
    record = read_stack_file(layout)
    live = set(stack_pids(layout.ident, _leaders(record)))
    kept = [p for p in record.get("processes", []) if p["pid"] in live]
    if not kept:
        if live:
            stack_down(layout)
        check_home(layout)
        created = create_databases(layout)
        if created:
            log(f"created databases {', '.join(created)}")
        paths = write_configs(layout)
        write_stack_file(layout, paths["celery"], [])
        _prepare_storage(layout)
    else:
        paths = {"workspace": layout.dir / "workspace.yaml", "celery": layout.dir / "celery.yaml"}
    kept_names = {p["name"] for p in kept}
    for dead in (p for p in record.get("processes", []) if kept and p["name"] not in kept_names):
        _stop_remnants(dead["pid"], live)  # what a dead leader started (a Celery worker's pool) goes too
    processes = list(kept)
    started: list[int] = []
    try:
        for spec in specs(layout, paths):
            if spec.name in kept_names:
                continue
            processes.append(_start(layout, spec))
            started.append(processes[-1]["pid"])
            write_stack_file(layout, paths["celery"], processes)
            log(f"{spec.name} ready (pid {processes[-1]['pid']})")
    except BaseException:
        for pid in started:  # nothing half-up: what this call started is stopped again
            _stop_remnants(pid, set(stack_pids(layout.ident, {pid: 0})))
        write_stack_file(layout, paths["celery"], kept)
        raise
    return stack_status(layout)


def _stop_remnants(leader: int, live: set[int]) -> None:
    """SIGKILL the live processes of a recorded leader's session."""
    for pid in live:
        try:
            if _proc_stat(str(pid))[1] == leader:
                _signal(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def _prepare_storage(layout: StackLayout) -> None:
    """Migrate the catalog and create Dagster's tables once, here, before any process races to; set the
    gpu pool's limit."""
    import dagster as dg  # deferred: status and down never need it

    os.environ.update({"EVAL_PIPELINE_HOME": str(layout.home), "DAGSTER_HOME": str(layout.dagster_home)})
    service.open_runtime().catalog.dispose()
    with dg.DagsterInstance.from_config(str(layout.dagster_home)) as instance:
        instance.upgrade()
        instance.event_log_storage.set_concurrency_slots("gpu", layout.gpu_pool_limit)


def _start(layout: StackLayout, spec: Spec) -> dict[str, Any]:
    port = {"code-server": layout.code_port, "webserver": layout.ui_port, "api": layout.api_port}.get(spec.name)
    if port and _port_open(port):
        raise Conflict(f"port {port} for the stack's {spec.name} is taken; set its EVAL_PIPELINE_STACK_*_PORT")
    log_path = layout.dir / "logs" / f"{spec.name}.log"
    if log_path.exists():  # the previous start's log is kept once; a probe reads this start's only
        log_path.replace(log_path.with_suffix(".log.1"))
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(spec.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_environment(layout, spec.env), cwd=layout.home, start_new_session=True)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _signal_group(proc.pid, signal.SIGKILL)
            raise Conflict(f"the stack's {spec.name} exited with {proc.returncode}; see {log_path}")
        if spec.ready(layout, log_path):
            return {"name": spec.name, "pid": proc.pid, "started": started_at(proc.pid), "log": str(log_path),
                    "argv": spec.argv}
        time.sleep(0.5)
    _signal_group(proc.pid, signal.SIGKILL)  # its session's process group: the process and what it started
    raise Conflict(f"the stack's {spec.name} was not ready after {READY_SECONDS:.0f} s; see {log_path}")


def stack_down(layout: StackLayout) -> dict[str, Any]:
    """Stop every process of the stack (SIGTERM, then SIGKILL after STOP_SECONDS); returns {stopped,
    killed}: the pids that ended on SIGTERM and those that had to be killed. Databases and files stay."""
    leaders = _leaders(read_stack_file(layout))

    def ours() -> list[int]:
        return stack_pids(layout.ident, leaders)

    pids = ours()
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline and ours():
        time.sleep(0.2)
    killed = ours()
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_SECONDS
    while ours() and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"home": str(layout.home), "stopped": sorted(set(pids) - set(killed)), "killed": sorted(killed)}


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
