"""Benchmark generation (not a test): one task of N generate_until requests on the tiny model.

    .venv/bin/python bench/generation.py [--requests 2000] [--max-gen-toks 32] [--repeat 3]

Reports, in one process with one loaded engine:
- bare: `vllm.LLM.generate` on exactly the token ids and sampling parameters the step submits;
- step: `generate_partition` (plan, cache lookup, engine call, Parquet chunk, catalog updates), cache off;
- run: a whole eval run through Dagster (`execute_in_process`: create, sensorless launch, step, checks).
Goal: step within 1.10x of bare.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--max-gen-toks", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=5000, help="max_workflow_sample_activities")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EVAL_PIPELINE_HOME"] = str(Path(tmp) / "home")
        import dagster as dg

        from eval_pipeline import runs
        from eval_pipeline.demo.synthetic import SyntheticTask, write_run
        from eval_pipeline.demo.tiny_model import build_tiny_model
        from eval_pipeline.execution.generate import generate_partition
        from eval_pipeline.generation.backends import backend_for
        from eval_pipeline.generation.requests import plan_requests
        from eval_pipeline.historical.importer import import_results
        from eval_pipeline.models.registry import add_model, resolve_model
        from eval_pipeline.orchestration.definitions import defs
        from eval_pipeline.orchestration.job_names import GENERATION_JOB
        from eval_pipeline.service.launching import execute_in_process
        from eval_pipeline.stores.runtime import open_runtime

        rt = open_runtime()
        write_run(Path(tmp) / "data", "bench/model", [SyntheticTask("bench_gen", "generate_until", args.requests)],
                  seed=0, timestamp="2026-01-01T00-00-00.000001")
        suite_id = import_results(rt.catalog, rt.lake, {"source": {"type": "path", "url": str(Path(tmp) / "data")}}
                                  ).suite_id
        folder = build_tiny_model(Path(tmp) / "tiny")
        add_model(rt.catalog, "tiny", {"backend": "vllm", "path": str(folder), "dtype": "float32",
                                       "max_model_len": 256})
        body = {"suite_id": suite_id, "models": ["tiny"], "max_workflow_sample_activities": args.chunk,
                "generation": {"max_gen_toks": args.max_gen_toks, "until": ["ZZZZ"], "use_cache": False}}
        model = resolve_model(rt.catalog, "tiny")
        engine = backend_for(model).backend  # loaded once, outside every timing

        probe = runs.create_run(rt.catalog, rt.lake, body)
        part = runs.run_partitions(rt.catalog, probe["id"])[0]
        from sqlalchemy import select

        from eval_pipeline.stores.catalog import tables as t
        with rt.catalog.session() as s:
            inputs = s.scalar(select(t.File.path).join(t.TaskVersion, t.TaskVersion.inputs_file_id == t.File.id)
                              .where(t.TaskVersion.task_id == part.task_id))
        generation = runs.get_run(rt.catalog, probe["id"])["generation"]
        requests = plan_requests(rt.lake, inputs, generation, None)

        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=engine.encode(r.context)) for r in requests]
        params = [SamplingParams(max_tokens=r.params["max_gen_toks"], stop=r.params["until"] + [engine.eos_text],
                                 temperature=0.0, skip_special_tokens=False, spaces_between_special_tokens=False)
                  for r in requests]
        engine.llm.generate(prompts[:50], params[:50], use_tqdm=False)  # warm-up

        bare, step, step_engine, whole = [], [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            engine.llm.generate(prompts, params, use_tqdm=False)
            bare.append(time.perf_counter() - t0)

            run = runs.create_run(rt.catalog, rt.lake, body)
            p = runs.run_partitions(rt.catalog, run["id"])[0]
            t0 = time.perf_counter()
            report = generate_partition(rt.catalog, rt.lake, run["id"], p.model, p.task_id)
            step.append(time.perf_counter() - t0)
            step_engine.append(report.generation_seconds)
            assert report.generated == args.requests

            t0 = time.perf_counter()
            run = runs.create_run(rt.catalog, rt.lake, body)
            (result,) = execute_in_process(dg.DagsterInstance.ephemeral(), rt.catalog, rt.lake, run["id"],
                                           defs.resolve_job_def(GENERATION_JOB),
                                           run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
            whole.append(time.perf_counter() - t0)
            assert result.success and runs.get_run(rt.catalog, run["id"])["status"] == "completed"

        med = statistics.median
        print(f"{args.requests} generate_until requests, max_gen_toks {args.max_gen_toks}, chunk {args.chunk}, "
              f"median of {args.repeat}")
        print(f"  bare vllm.LLM.generate      {med(bare):7.2f} s  ({args.requests / med(bare):7.0f} req/s)")
        print(f"  generation step             {med(step):7.2f} s  ({med(step) / med(bare):.3f}x bare; "
              f"engine call {med(step_engine):.2f} s)")
        print(f"  whole eval run via Dagster  {med(whole):7.2f} s  ({med(whole) / med(bare):.3f}x bare)")
        print(f"  runs (s): bare {[round(x, 2) for x in bare]} step {[round(x, 2) for x in step]} "
              f"whole {[round(x, 2) for x in whole]}")


if __name__ == "__main__":
    main()
