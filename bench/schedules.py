"""Benchmark the schedule sensor (not a test): N enabled schedules in a fresh catalog, then the wall time of
one evaluation of the `schedule_ticks` sensor (through Dagster's sensor context, as the daemon runs it):

1. steady state: no tick due (what the sensor does every 10 s between ticks);
2. a burst: every schedule due at once (N nightly schedules at 02:00), each tick making its eval run.

    .venv/bin/python bench/schedules.py [--schedules 1000] [--repeat 5] [--backend sqlite|postgresql]

PostgreSQL: EVAL_PIPELINE_BENCH_PG (an SQLAlchemy URL to an admin database), else the server on
127.0.0.1:5432 as user postgres; a throwaway database is created and dropped.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from throwaway_pg import throwaway_database  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schedules", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench_schedules_"))
    os.environ["EVAL_PIPELINE_HOME"] = str(home)
    drop = None
    if args.backend == "postgresql":
        os.environ["EVAL_PIPELINE_DATABASE_URL"], drop = throwaway_database("bench_sched")

    import dagster as dg

    from eval_pipeline import service
    from eval_pipeline.demo.synthetic import SyntheticTask, write_run
    from eval_pipeline.historical.importer import import_results
    from eval_pipeline.orchestration.sensors import schedule_ticks
    from eval_pipeline.service.instance import dagster_instance
    from eval_pipeline.stores.catalog import tables as t
    from resources import CatalogResource, LakeResource

    rt = service.open_runtime()
    write_run(home / "data", "org/bench", [SyntheticTask("bench_mc", "multiple_choice", 20)], seed=0)
    suite_id = import_results(rt.catalog, rt.lake, {"source": {"type": "path", "url": str(home / "data")},
                                                    "suite_name": "bench"}).suite_id
    service.add_model(rt, "bench-model", {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"})
    start = time.perf_counter()
    for i in range(args.schedules):
        service.create_schedule(rt, {"name": f"nightly {i}", "suite_id": suite_id, "cron": f"{i % 60} 2 * * *",
                                     "timezone": "Europe/Berlin", "overlap_policy": "allow_all",
                                     "run": {"models": ["bench-model"]}}, org_id="org_default", team_id="t")
    created = time.perf_counter() - start
    instance = dagster_instance(rt)

    def evaluate() -> float:
        with dg.build_sensor_context(instance=instance, resources={"catalog": CatalogResource(),
                                                                   "lake": LakeResource()}) as context:
            t0 = time.perf_counter()
            schedule_ticks(context)
            return time.perf_counter() - t0

    idle = [evaluate() for _ in range(args.repeat)]
    bursts = []
    for _ in range(args.repeat):
        with rt.catalog.session() as s:  # every schedule due now (a tick a little in the past)
            s.execute(sa.update(t.Schedule).values(next_run_at=int(time.time()) - 60))
        bursts.append(evaluate())
    with rt.catalog.session() as s:
        made = s.scalar(sa.select(sa.func.count()).select_from(t.Run))
    print(f"backend {args.backend}; {args.schedules} enabled schedules (created in {created:.1f} s, "
          f"{created / args.schedules * 1000:.1f} ms each)")
    print(f"one sensor evaluation, no tick due: median {statistics.median(idle) * 1000:.1f} ms "
          f"(min {min(idle) * 1000:.1f}, max {max(idle) * 1000:.1f}; {args.repeat} evaluations)")
    print(f"one sensor evaluation, all {args.schedules} due: median {statistics.median(bursts):.2f} s "
          f"({statistics.median(bursts) / args.schedules * 1000:.1f} ms per tick and eval run; {made} runs made)")
    rt.catalog.dispose()
    if drop:
        drop()


if __name__ == "__main__":
    main()
