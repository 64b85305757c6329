"""Benchmark the deployed stack at scale (not a test): M models x T tasks x D docs of generate_until
(20 x 50 x 20 = 20,000 requests by default) through `deploy/stack` with 2 gpu and 2 default Celery workers,
against a loopback OpenAI-protocol endpoint that answers at once. Reports the eval run's wall time, the
product's overhead per (model, task) partition, requests per second against the floor of sending the same
requests with the openai client alone at the same concurrency, the peak RSS of the daemon, the webserver
and each worker, and the sensor's planning time for such a run.

    .venv/bin/python bench/scale.py [--models 20] [--tasks 50] [--docs 20] [--concurrency 8]

PostgreSQL: EVAL_PIPELINE_BENCH_PG (a postgresql:// admin URL), else 127.0.0.1:5432 as postgres; Redis:
EVAL_PIPELINE_BENCH_REDIS, else 127.0.0.1:6379. The stack's databases and keys are removed afterwards.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

ANSWER = " 42"


class Instant(BaseHTTPRequestHandler):
    """OpenAI's /v1/completions, answered at once with the same short text (HTTP/1.1, kept alive)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        out = json.dumps({"id": "cmpl-0", "object": "text_completion", "created": 0, "model": body["model"],
                          "choices": [{"index": i, "text": ANSWER, "finish_reason": "stop", "logprobs": None}
                                      for i in range(len(prompts))],
                          "usage": {"prompt_tokens": 16 * len(prompts), "completion_tokens": 2 * len(prompts),
                                    "total_tokens": 18 * len(prompts)}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def _serve(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), Instant).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def floor_seconds(url: str, prompts: list[str], concurrency: int) -> float:
    """The same requests sent with the openai client alone, `concurrency` at a time."""
    import openai

    async def main() -> None:
        limit = asyncio.Semaphore(concurrency)
        async with openai.AsyncOpenAI(base_url=url, api_key="EMPTY") as client:
            async def one(prompt: str) -> None:
                async with limit:
                    await client.completions.create(model="m", prompt=prompt, max_tokens=16, temperature=0.0)
            await asyncio.gather(*(one(p) for p in prompts))

    started = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - started


class SessionUsage(threading.Thread):
    """Samples, every second, each stack process's session (the process and what it started, run
    workers and Celery pool processes included): its peak RSS, and the CPU seconds its processes used during
    the run (user plus system, each process's last reading; a process that ends between two samples loses
    its last second)."""

    def __init__(self, leaders: dict[str, int]):
        super().__init__(daemon=True)
        self.leaders, self.stop = leaders, threading.Event()
        self.peak = {name: 0 for name in leaders}
        self.cpu: dict[int, tuple[int, float]] = {}  # pid -> (session, CPU seconds in the run so far)
        self.base: dict[int, float] = {}  # pid -> CPU seconds it had used when sampling began
        self.tick = os.sysconf("SC_CLK_TCK")
        self.machine = _machine_cpu()

    def run(self) -> None:
        page_kb, first = os.sysconf("SC_PAGE_SIZE") // 1024, True
        while not self.stop.is_set():
            by_session: dict[int, int] = {}
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:  # one read per process: the sampler must cost the machine next to nothing
                    head, tail = (entry / "stat").read_text().rsplit(")", 1)
                    fields = tail.split()
                    session, rss = int(fields[3]), int(fields[21]) * page_kb
                except (OSError, ValueError, IndexError):
                    continue
                by_session[session] = by_session.get(session, 0) + rss
                if head.split("(", 1)[1] in ("postgres", "redis-server"):
                    session = -1  # the servers the stack uses, counted together
                cpu = (int(fields[11]) + int(fields[12])) / self.tick
                if first:  # what a process used before the run (start-up, PostgreSQL's earlier life) is not counted
                    self.base[int(entry.name)] = cpu
                self.cpu[int(entry.name)] = (session, cpu - self.base.get(int(entry.name), 0.0))
            first = False
            for name, pid in self.leaders.items():
                self.peak[name] = max(self.peak[name], by_session.get(pid, 0))
            self.stop.wait(1.0)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per stack process (its session), and of PostgreSQL and Redis together, over the run."""
        return {name: round(sum(cpu for session, cpu in self.cpu.values() if session == pid), 1)
                for name, pid in {**self.leaders, "postgres+redis": -1}.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=8, help="generation_concurrency of each partition")
    args = ap.parse_args()

    from eval_pipeline.demo.synthetic import SyntheticTask, write_run
    from eval_pipeline.deployment import stack_layout
    from eval_pipeline.historical.importer import import_results
    from eval_pipeline.models.registry import add_model
    from eval_pipeline.runs import cancel_run, create_run
    from eval_pipeline.service.launching import plan_block_runs
    from eval_pipeline.stores.catalog import Catalog
    from eval_pipeline.stores.keys import create_key
    from eval_pipeline.stores.lake import Lake

    # the endpoint in a process of its own: this one's threads (the RSS sampler) must not slow it down
    port = free_port()
    server = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    server.start()
    endpoint = f"http://127.0.0.1:{port}/v1"
    while True:
        try:
            httpx.post(f"{endpoint}/completions", json={"model": "m", "prompt": "x"}, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    home = Path(tempfile.mkdtemp(prefix="bench-scale-")) / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVAL_PIPELINE_", "DAGSTER_"))}
    env.update({"EVAL_PIPELINE_HOME": str(home), "EVAL_PIPELINE_STACK_GPU_WORKERS": "2",
                "EVAL_PIPELINE_STACK_DEFAULT_WORKERS": "2", "EVAL_PIPELINE_STACK_UI_PORT": str(free_port()),
                "EVAL_PIPELINE_STACK_API_PORT": str(free_port()), "EVAL_PIPELINE_STACK_CODE_PORT": str(free_port()),
                "EVAL_PIPELINE_STACK_POSTGRES_URL": os.environ.get(
                    "EVAL_PIPELINE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
                "EVAL_PIPELINE_STACK_REDIS_URL": os.environ.get("EVAL_PIPELINE_BENCH_REDIS", "redis://127.0.0.1:6379")})
    layout = stack_layout(env)
    started = time.perf_counter()
    up = subprocess.run([str(REPO / "deploy" / "stack"), "up"], env=env, capture_output=True, text=True)
    if up.returncode:
        sys.exit(up.stderr)
    status = json.loads(up.stdout)
    print(f"stack up: {time.perf_counter() - started:.1f} s")
    catalog, lake = Catalog(layout.database_url("catalog")), Lake(str(home / "lake"))
    try:
        tasks = [SyntheticTask(f"scale_{i:03d}", "generate_until", args.docs) for i in range(args.tasks)]
        write_run(home / "data", "org/model-a", tasks, seed=0)
        suite_id = import_results(catalog, lake, {"source": {"type": "path", "url": str(home / "data")},
                                                  "suite_name": "scale"}).suite_id
        models = [f"endpoint-{i:02d}" for i in range(args.models)]
        for name in models:
            add_model(catalog, name, {"backend": "openai", "base_url": endpoint, "served_name": name})
        body = {"suite_id": suite_id, "models": models, "generation_concurrency": args.concurrency,
                "generation": {"max_gen_toks": 16, "temperature": 0.0, "use_cache": False}}

        # the sensor's planning for such a run, timed here on a queued copy that is then cancelled
        probe = create_run(catalog, lake, body)
        t0 = time.perf_counter()
        block_runs, _, _ = plan_block_runs(catalog, probe["id"], [], lake)
        planning = time.perf_counter() - t0
        cancel_run(catalog, probe["id"])

        key = create_key(catalog, "org_default")["key"]
        peaks = SessionUsage({p["name"]: p["pid"] for p in status["processes"]})
        peaks.start()
        endpoint_cpu, bench_cpu = _cpu_seconds(server.pid), time.process_time()
        t0 = time.perf_counter()
        run = httpx.post(f"{layout.api_url}/api/v1/llm/evals/runs", json=body,
                         headers={"Authorization": f"Bearer {key}"}, timeout=60).json()
        while True:
            got = httpx.get(f"{layout.api_url}/api/v1/llm/evals/runs/{run['id']}",
                            headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
            if got["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(1)
        wall = time.perf_counter() - t0
        peaks.stop.set()
        peaks.join()
        busy, every = (b - a for a, b in zip(peaks.machine, _machine_cpu()))
        endpoint_cpu, bench_cpu = _cpu_seconds(server.pid) - endpoint_cpu, time.process_time() - bench_cpu
        requests = got["request_counts"]["total"]
        partitions = args.models * args.tasks
        cpu0 = time.process_time() + _cpu_seconds(server.pid)
        floor = floor_seconds(endpoint, [f"Question {i}: what is 6 x 7? Answer:" for i in range(requests)],
                              args.concurrency * layout.gpu_workers)
        floor_cpu = time.process_time() + _cpu_seconds(server.pid) - cpu0
        result = {
            "status": got["status"], "error": got["error"], "requests": requests,
            "failed": got["request_counts"]["failed"],
            "partitions": partitions, "dagster_runs": len(block_runs), "wall_seconds": round(wall, 1),
            "overhead_per_partition_seconds": round((wall - floor) / partitions, 3),
            "requests_per_second": round(requests / wall, 1), "floor_seconds": round(floor, 1),
            "floor_requests_per_second": round(requests / floor, 1),
            "floor_cpu_seconds": round(floor_cpu, 1),  # the client's and the endpoint's, both
            "ratio_to_floor": round(wall / floor, 2),
            "engine_seconds": got["cost"]["engine_seconds"], "generation_wall_seconds": got["cost"]["wall_seconds"],
            "sensor_planning_seconds": round(planning, 3),
            "peak_rss_mb": {name: round(kb / 1024) for name, kb in peaks.peak.items()},
            "cpu_seconds": peaks.cpu_seconds() | {"endpoint": round(endpoint_cpu, 1), "bench": round(bench_cpu, 1)},
            "machine_cpu_busy": round(busy / every, 3),
            "postgres": postgres_activity(layout),
            "steps": step_timings(layout.database_url("dagster").replace("+psycopg2", "")),
        }
        print(json.dumps(result, indent=2))
    finally:
        catalog.dispose()
        subprocess.run([str(REPO / "deploy" / "stack"), "down"], env=env, capture_output=True)
        _drop(layout)
        server.terminate()


def step_timings(dagster_url: str) -> dict[str, dict[str, float]]:
    """From the stack's Dagster event log, per step (asset or check): how many ran, and the mean seconds
    from its hand-over to Celery ("Submitting celery task") to STEP_START (waiting for a worker, and the
    worker's setup) and from STEP_START to its end (the step's own work)."""
    import psycopg2

    conn = psycopg2.connect(dagster_url)
    with conn.cursor() as cur:
        cur.execute("""SELECT step_key, count(*), avg(extract(epoch from started - handed)),
                              avg(extract(epoch from ended - started))
                       FROM (SELECT run_id, step_key,
                                    min(timestamp) FILTER (WHERE event LIKE '%Submitting celery task%') AS handed,
                                    min(timestamp) FILTER (WHERE dagster_event_type = 'STEP_START') AS started,
                                    max(timestamp) FILTER (WHERE dagster_event_type IN ('STEP_SUCCESS', 'STEP_FAILURE'))
                                        AS ended
                             FROM event_logs WHERE step_key IS NOT NULL GROUP BY run_id, step_key) AS steps
                       WHERE handed IS NOT NULL AND started IS NOT NULL AND ended IS NOT NULL
                       GROUP BY step_key ORDER BY step_key""")
        rows = cur.fetchall()
    conn.close()
    return {key: {"steps": n, "to_start_seconds": round(float(wait), 2), "run_seconds": round(float(work), 2)}
            for key, n, wait, work in rows}


def postgres_activity(layout) -> dict[str, dict[str, int]]:
    """Per stack database: the sessions (connections) opened and the transactions committed so far."""
    import psycopg2

    conn = psycopg2.connect(layout.postgres_url)
    with conn.cursor() as cur:
        cur.execute("SELECT datname, sessions, xact_commit FROM pg_stat_database WHERE datname = ANY(%s)",
                    ([layout.database(role) for role in ("catalog", "dagster")],))
        rows = cur.fetchall()
    conn.close()
    return {name.rsplit("_", 1)[1]: {"sessions": sessions, "transactions": commits} for name, sessions, commits in rows}


def _machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), sum(ticks) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int | None) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drop(layout) -> None:
    import psycopg2
    import redis

    conn = psycopg2.connect(layout.postgres_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        for role in ("catalog", "dagster"):
            cur.execute(f'DROP DATABASE IF EXISTS "{layout.database(role)}" WITH (FORCE)')
    conn.close()
    client = redis.Redis.from_url(layout.redis_database_url)
    for key in client.scan_iter(match=layout.key_prefix + "*"):
        client.delete(key)


if __name__ == "__main__":
    main()
