"""`make demo`: import generated lm-eval results through Dagster, then evaluate a tiny local model on them."""
from __future__ import annotations

from typing import Any, Callable

import dagster as dg
import yaml
from dagster._core.execution.execution_result import ExecutionResult
from tabulate import tabulate

from eval_pipeline import service
from eval_pipeline.demo.synthetic import write_demo
from eval_pipeline.demo.tiny_model import build_tiny_model
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import EXPORT_JOB, GENERATION_JOB
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import QUIET, execute_in_process
from eval_pipeline.service.location import run_here

DEMO_SUITE = "demo: arithmetic"
DEMO_MODEL = "tiny-demo"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table (numbers printed as given)."""
    return tabulate(rows, headers=headers, disable_numparse=True)


def _checks(result: ExecutionResult) -> list[list[Any]]:
    """One row per check of a Dagster run: passed on every partition it evaluated, and how many."""
    by_check: dict[str, list[Any]] = {}
    for e in result.get_asset_check_evaluations():
        by_check.setdefault(e.asset_check_key.name, []).append(e)
    rows = []
    for name, evals in by_check.items():
        passed = sum(e.passed for e in evals)
        summary = evals[0].metadata.get("summary")
        note = summary.value if summary and len(evals) == 1 else f"{passed} of {len(evals)} partitions passed"
        rows.append([name, "passed" if passed == len(evals) else "FAILED", note])
    return rows


def run_demo(rt: service.Runtime, echo: Callable[[str], None]) -> None:
    """Write synthetic lm-eval results into the home, import and publish them with the Dagster jobs,
    evaluate and export a tiny local model on the suite, and print what each step made through `echo`."""
    instance = dagster_instance(rt)
    home = rt.settings.home
    data = home / "demo-data"
    write_demo(data)
    sources = home / "demo-sources.yaml"
    sources.write_text(yaml.safe_dump({"imports": [{
        "source": {"type": "path", "url": str(data)}, "suite_name": DEMO_SUITE,
        "suite_description": "Generated lm-eval 0.4.13 results of two tiny models on three tasks.",
    }]}))
    echo(f"Generated lm-eval results in {data}; importing them with the Dagster job 'historical_import'.")
    imported = run_here(instance, defs.resolve_job_def("historical_import"), run_config={
        **QUIET, "ops": {"historical_results": {"config": {"sources_file": str(sources)}}}})
    meta = imported.asset_materializations_for_node("historical_results")[0].metadata
    echo(f"  imported runs {meta['imported_runs'].value}, skipped {meta['skipped_runs'].value}, "
         f"samples {meta['imported_samples'].value}, rejected files {meta['rejected_files'].value}")

    suite_id = next(x["id"] for x in service.list_suites(rt) if x["name"] == DEMO_SUITE)
    if not instance.has_dynamic_partition("suite", suite_id):  # a Dagster home newer than the catalog
        instance.add_dynamic_partitions("suite", [suite_id])
    published = run_here(instance, defs.resolve_job_def("suite_publish"), tags={"dagster/partition": suite_id},
                         run_config=QUIET)
    suite = service.get_suite(rt, suite_id)
    latest = suite["versions"][-1]
    echo(f"\nSuite {suite['name']!r} ({suite['id']}), version {latest['version']} of "
         f"{suite['latest_version']}:")
    echo(table(["task", "task version", "request kind", "docs", "inputs file"],
               [[tk["name"], tk["version"], tk["request_kind"], tk["n_docs"], tk["inputs_file_id"]]
                for tk in latest["manifest"]["tasks"]]))

    df = service.imported_metrics(rt, suite_id=suite_id)
    echo("\nImported metrics (value ± stderr; 'recomputed' is the mean of the imported per-sample values):")
    echo(table(["model", "task", "metric", "filter", "value", "stderr", "n", "recomputed"], [
        [r.model, r.task, r.metric, r.filter, f"{r.value:.4f}", f"{r.stderr:.4f}", r.n,
         "match" if r.recomputed_matches else ("n/a" if r.recomputed_matches is None else "MISMATCH")]
        for r in df.itertuples()]))

    evaluated = _evaluate(rt, instance, suite_id, echo)

    echo("\nAsset checks (Great Expectations):")
    echo(table(["check", "result", "summary"], _checks(imported) + _checks(published) + evaluated))
    echo(f"\nOpen the Dagster UI on this instance:\n"
         f"  DAGSTER_HOME={rt.settings.dagster_home} EVAL_PIPELINE_HOME={home} "
         f".venv/bin/dagster dev -w workspace.yaml\n"
         f"then browse to http://127.0.0.1:3000 (Assets -> historical_results, suite_versions, generations, "
         f"grades, metrics, export_bundles).")


def _evaluate(rt: service.Runtime, instance: dg.DagsterInstance, suite_id: str,
              echo: Callable[[str], None]) -> list[list[Any]]:
    """Build the tiny local model, register it, and evaluate (generate, grade) it on the suite through Dagster."""
    folder = build_tiny_model(rt.settings.home / "models" / "tiny-demo")
    service.add_model(rt, DEMO_MODEL, {"backend": "vllm", "path": str(folder), "dtype": "float32",
                                       "max_model_len": 256}, default=True, replace=True)
    run = service.create_run(rt, {
        "suite_id": suite_id, "models": [DEMO_MODEL], "name": "demo eval",
        "generation": {"max_gen_toks": 16, "until": ["\n"]}, "max_workflow_sample_activities": 100})
    echo(f"\nEvaluating {DEMO_MODEL!r} (a tiny random model built in {folder}) on the suite: run {run['id']}, "
         f"{run['request_counts']['total']} requests, through the Dagster job '{GENERATION_JOB}'.")
    results = execute_in_process(instance, rt.catalog, rt.lake, run["id"], defs.resolve_job_def(GENERATION_JOB),
                                 run_config=QUIET)
    done = service.get_run(rt, run["id"], partitions=True)
    echo(f"  status {done['status']}, requests {done['request_counts']}, tokens in/out "
         f"{done['tokens']['input']}/{done['tokens']['output']}")
    echo(table(["partition (model|task)", "status", "requests", "completed", "failed", "chunks"],
               [[p["partition_key"], p["status"], p["planned"], p["completed"], p["failed"], p["chunks"]]
                for p in done["partitions"]]))
    echo("\nMetrics from the rule grades (lm-eval's metrics and filters; the weights are random, so are "
         "the scores):")
    echo(table(["model", "task", "metric,filter", "value", "stderr", "95% interval", "n"], [
        [model, task, key, f"{m['value']:.4f}", f"{m['stderr']:.4f}", f"[{m['ci_low']:.4f}, {m['ci_high']:.4f}]",
         m["n"]]
        for model, tasks in (done["metrics"] or {}).items() for task, ms in tasks.items() for key, m in ms.items()]))
    report = service.file_uri(rt, done["artifact_file_ids"][0])
    echo(f"\nRun report (chart with error bars): {report}; `eval-pipeline runs report {run['id']}` "
         "prints its tables.")
    return [row for r in results for row in _checks(r)] + _export(rt, instance, run["id"], echo)


def _export(rt: service.Runtime, instance: dg.DagsterInstance, run_id: str,
            echo: Callable[[str], None]) -> list[list[Any]]:
    """Export the run's bundle to the service's own storage through the Dagster job 'export'."""
    export = service.create_export(rt, {"run_id": run_id, "storage_type": "system",
                                        "content": list(service.EXPORT_CONTENT)})
    instance.add_dynamic_partitions("export", [export["id"]])
    result = run_here(instance, defs.resolve_job_def(EXPORT_JOB), tags={"dagster/partition": export["id"]},
                      run_config=QUIET)
    export = service.get_export(rt, export["id"])
    echo(f"\nExport {export['id']}: {export['status']} at {export['location']}")
    echo(table(["file", "rows", "bytes", "sha256"], [[f["name"], f["rows"], f["bytes"], f["sha256"][:16] + "…"]
                                                     for f in export["files"] or []]))
    return _checks(result)
