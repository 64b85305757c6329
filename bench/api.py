"""Benchmark the HTTP API (not a test): 100,000 runs in the catalog, then p50/p95 latency over loopback
of a Qianfan DescribeEvalTasks with a keyFilter (signed), an MKA1 run get, and an MKA1 run create
(queued, not executed), on SQLite and on PostgreSQL.

    .venv/bin/python bench/api.py [--runs 100000] [--requests 200] [--backend sqlite|postgresql|both]

PostgreSQL: EVAL_PIPELINE_BENCH_PG (an SQLAlchemy URL to an admin database), else the server on
127.0.0.1:5432 as user postgres; a throwaway database is created and dropped.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from throwaway_pg import throwaway_database  # noqa: E402


def _seed(rt, n_runs: int) -> tuple[str, list[str]]:
    """A small imported suite in org acme, a model, and n_runs runs copied from one real run."""
    from eval_pipeline.demo.synthetic import SyntheticTask, write_run
    from eval_pipeline.historical.importer import import_results
    from eval_pipeline.models.registry import add_model
    from eval_pipeline.runs import create_run
    from eval_pipeline.stores.catalog import tables as t

    data = rt.settings.home / "data"
    write_run(data, "org/model-a", [SyntheticTask("bench_mc", "multiple_choice", 20)], seed=0,
              timestamp="2026-01-01T00-00-00.000001")
    suite_id = import_results(rt.catalog, rt.lake, {"source": {"type": "path", "url": str(data)},
                                                    "suite_name": "bench"}, org_id="acme").suite_id
    for name in ("model-a", "model-b", "model-c"):
        add_model(rt.catalog, name, {"backend": "vllm", "path": f"org/{name}"})
    template = create_run(rt.catalog, rt.lake, {"suite_id": suite_id, "models": ["model-a"]}, org_id="acme")
    columns = {attr.columns[0].name: attr.key for attr in t.Run.__mapper__.column_attrs}
    with rt.catalog.session() as s:
        row = s.get(t.Run, template["id"])
        base = {col: getattr(row, key) for col, key in columns.items()}
    ids, start = [], time.time_ns()
    with rt.catalog.engine.begin() as conn:
        for offset in range(0, n_runs, 5000):
            batch = []
            for i in range(offset, min(n_runs, offset + 5000)):
                run_id = f"eval_run_{uuid.uuid4().hex}"
                ids.append(run_id)
                batch.append({**base, "id": run_id, "name": f"nightly-{i}", "models": [f"model-{'abc'[i % 3]}"],
                              "created_ns": start + i, "idempotency_key": None,
                              "search_text": f"nightly-{i} {run_id}", "model_list": f"|model-{'abc'[i % 3]}|"})
            conn.execute(t.Run.__table__.insert(), batch)
    if rt.catalog.engine.dialect.name == "postgresql":  # fresh statistics, as autovacuum would leave them
        with rt.catalog.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE eval_runs"))
    return suite_id, ids


def _serve(rt):
    import uvicorn

    from eval_pipeline.api.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            httpx.get(url + "/healthz", timeout=0.5)
            return url, server
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the API did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _signed(client, url: str, ak: str, sk: str, body: dict):
    from eval_pipeline.api.qianfan import bce_signature

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    headers = {"host": url.split("//", 1)[1], "content-type": "application/json", "x-bce-date": stamp}
    prefix = f"bce-auth-v1/{ak}/{stamp}/300"
    sig = bce_signature(sk, prefix, "POST", "/v2/eval", {"Action": "DescribeEvalTasks"}, headers, sorted(headers))
    return client.post(f"{url}/v2/eval?Action=DescribeEvalTasks", content=json.dumps(body),
                       headers={**headers, "Authorization": f"{prefix}/{';'.join(sorted(headers))}/{sig}"})


def _timed(fn, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        response = fn(i)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text[:300]
    times.sort()
    return statistics.median(times), times[int(0.95 * (n - 1))]


def bench(backend: str, n_runs: int, n_requests: int) -> dict:
    from eval_pipeline.stores.keys import create_key, master_secret
    from eval_pipeline.stores.runtime import open_runtime
    from eval_pipeline.stores.settings import Settings

    drop = None
    with tempfile.TemporaryDirectory() as home:
        env = {"EVAL_PIPELINE_HOME": home}
        if backend == "postgresql":
            env["EVAL_PIPELINE_DATABASE_URL"], drop = throwaway_database("bench_api")
        try:
            rt = open_runtime(Settings.from_env(env))
            t0 = time.perf_counter()
            suite_id, ids = _seed(rt, n_runs)
            seeded = time.perf_counter() - t0
            key = create_key(rt.catalog, "acme")["key"]
            pair = create_key(rt.catalog, "acme", kind="aksk", master=master_secret(rt.settings.home))
            url, server = _serve(rt)
            rng = random.Random(0)
            auth = {"Authorization": f"Bearer {key}"}
            with httpx.Client(timeout=30) as client:
                for _ in range(20):  # warm up connections, caches and imports
                    client.get(f"{url}/api/v1/llm/evals/runs/{ids[0]}", headers=auth)
                    _signed(client, url, pair["access_key"], pair["secret_key"], {"evalType": "auto"})
                listed = _timed(lambda i: _signed(client, url, pair["access_key"], pair["secret_key"], {
                    "evalType": "auto", "keyFilter": f"nightly-{rng.randrange(n_runs)}", "maxKeys": 10}), n_requests)
                got = _timed(lambda i: client.get(f"{url}/api/v1/llm/evals/runs/{rng.choice(ids)}", headers=auth),
                             n_requests)
                made = _timed(lambda i: client.post(f"{url}/api/v1/llm/evals/runs", headers=auth, json={
                    "suite_id": suite_id, "models": ["model-b"]}), n_requests)
            server.should_exit = True
            rt.catalog.dispose()
        finally:
            if drop:
                drop()
    return {"backend": backend, "runs": n_runs, "seed_s": seeded, "list": listed, "get": got, "create": made}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"{args.runs:,} runs in the catalog; {args.requests} sequential requests each over loopback (ms)")
    for backend in backends:
        r = bench(backend, args.runs, args.requests)
        print(f"{backend:10s} seeded in {r['seed_s']:.1f} s | "
              + " | ".join(f"{k} p50 {r[k][0]:.1f} p95 {r[k][1]:.1f}" for k in ("list", "get", "create")))


if __name__ == "__main__":
    main()
