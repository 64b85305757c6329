"""Eval runs end to end: validation, lifecycle and counts through Dagster, one engine load per model,
the cache, the sensor, and a UI-style backfill without an eval run."""
import os

import dagster as dg
import pytest
from sqlalchemy import func, select

from eval_pipeline import runs
from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.generation import backends as engines
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.orchestration.sensors import queued_runs
from eval_pipeline.results.report import markdown as runs_report_markdown
from eval_pipeline.service.launching import RUN_TAG, execute_in_process
from eval_pipeline.stores.catalog import tables as t
from resources import CatalogResource, LakeResource


def _count(catalog, table) -> int:
    with catalog.session() as s:
        return s.scalar(select(func.count()).select_from(table))


def _task_ids(rt) -> dict[str, str]:
    with rt.catalog.session() as s:
        return dict(s.execute(select(t.Task.name, t.Task.id)).all())


@pytest.mark.parametrize("body, field", [
    ({"models": ["tiny"]}, "suite_id"),
    ({"models": []}, "models"),
    ({"models": ["tiny"] * 2}, "models"),
    ({"models": [f"m{i}" for i in range(21)]}, "models"),
    ({"models": ["tiny"], "suite_version": 0}, "suite_version"),
    ({"models": ["tiny"], "suite_version": 7}, "suite_version"),
    ({"models": ["tiny"], "task_ids": []}, "task_ids"),
    ({"models": ["tiny"], "task_ids": ["eval_task_nope"]}, "task_ids[0]"),
    ({"models": ["tiny"], "generation_concurrency": 0}, "generation_concurrency"),
    ({"models": ["tiny"], "concurrency": 257}, "concurrency"),
    ({"models": ["tiny"], "grader_concurrency": 300}, "grader_concurrency"),
    ({"models": ["tiny"], "max_samples_per_task": 0}, "max_samples_per_task"),
    ({"models": ["tiny"], "max_workflow_sample_activities": 99}, "max_workflow_sample_activities"),
    ({"models": ["tiny"], "max_workflow_sample_activities": 50001}, "max_workflow_sample_activities"),
    ({"models": ["tiny"], "generation": {"temperature": -1}}, "generation.temperature"),
    ({"models": ["tiny"], "generation": {"top_p": 0}}, "generation.top_p"),
    ({"models": ["tiny"], "generation": {"max_gen_toks": 5, "max_output_tokens": 6}}, "generation.max_gen_toks"),
    ({"models": ["tiny"], "generation": {"until": [""]}}, "generation.until"),
    ({"models": ["tiny"], "generation": {"bogus": 1}}, "generation.bogus"),
    ({"models": ["no-such-model"]}, "models[0]"),
    ({"models": ["tiny"], "metadata": {"k": 1}}, "metadata.k"),
    ({"models": ["tiny"], "name": ""}, "name"),
])
def test_bad_run_requests_name_the_field_and_create_nothing(eval_home, body, field):
    if "suite_id" not in str(body) and field != "suite_id":
        body = {"suite_id": eval_home.suite_id, **body}
    with pytest.raises(InvalidInput) as err:
        runs.create_run(eval_home.catalog, eval_home.lake, body)
    assert err.value.field == field
    assert _count(eval_home.catalog, t.Run) == 0 and _count(eval_home.catalog, t.RunPartition) == 0


def test_unknown_suite_is_not_found(eval_home):
    with pytest.raises(NotFound):
        runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": "eval_suite_x", "models": ["tiny"]})


def test_plan_counts_requests_of_both_kinds(eval_home):
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["auto"],
                                                              "generation": {"max_gen_toks": 8, "until": ["\n"]}})
    # multiple choice docs have 4 choices each (loglikelihood requests); generate_until docs have one
    assert run["request_counts"] == {"total": (10 + 8) * 4 + 12 + 10, "completed": 0, "failed": 0}
    assert run["status"] == "queued" and run["object"] == "eval.run" and run["models"] == ["auto"]
    assert run["generation"] == {"max_output_tokens": 8, "stop": ["\n"]}
    limited = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "max_samples_per_task": 3,
        "task_ids": [_task_ids(eval_home)["ev_gen_a"], _task_ids(eval_home)["ev_mc_a"]]})
    assert limited["request_counts"]["total"] == 3 + 3 * 4


def test_an_unregistered_model_folder_is_a_vllm_model(eval_home, tiny_model):
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id,
                                                              "models": [str(tiny_model)]})
    (part, *_) = runs.run_partitions(eval_home.catalog, run["id"])
    assert part.model == str(tiny_model) and "|" not in part.model_key and "/" not in part.model_key
    from eval_pipeline.models.registry import resolve_model

    assert resolve_model(eval_home.catalog, str(tiny_model)).options.path == str(tiny_model.resolve())


def test_a_failed_request_registers_no_model_folder(eval_home, tiny_model):
    with pytest.raises(InvalidInput) as err:
        runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id,
                                                            "models": [str(tiny_model), "no-such-model"]})
    assert err.value.field == "models[1]"
    assert _count(eval_home.catalog, t.Model) == 1  # only `tiny`, registered by the fixture


def test_a_model_that_cannot_load_fails_the_run_with_model_and_task(eval_home, tmp_path, quiet_run_config):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": "not a number"}')
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": [str(broken)], "task_ids": [_task_ids(eval_home)["ev_gen_a"]]})
    (result,) = execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run["id"],
                                   defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
    assert not result.success
    failed = runs.get_run(eval_home.catalog, run["id"])
    assert failed["status"] == "failed" and failed["failed_at"] is not None
    assert failed["error"]["code"] == "generation_failed"
    assert failed["error"]["model"] == str(broken) and failed["error"]["task"] == "ev_gen_a"
    assert failed["error"]["message"]
    resumed = runs.resume_run(eval_home.catalog, run["id"])
    assert resumed["status"] == "in_progress" and resumed["error"] is None


@pytest.mark.parametrize("eval_home", ["sqlite", "postgresql"], indirect=True)
def test_whole_run_through_dagster_loads_the_engine_once(eval_home, quiet_run_config):
    engines.release_all()
    instance = dg.DagsterInstance.ephemeral()
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "generation": {"max_gen_toks": 6},
        "max_workflow_sample_activities": 100, "name": "four tasks"})
    assert run["status"] == "queued" and run["started_at"] is None
    results = execute_in_process(instance, eval_home.catalog, eval_home.lake,
                                 run["id"], defs.resolve_job_def(GENERATION_JOB),
                                 run_config=quiet_run_config)
    assert len(results) == 1 and results[0].success  # one Dagster run: one model, one block of 4 tasks

    done = runs.get_run(eval_home.catalog, run["id"], partitions=True)
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": run["request_counts"]["total"],
                                      "completed": run["request_counts"]["total"], "failed": 0}
    assert done["started_at"] >= done["created_at"] and done["completed_at"] >= done["started_at"]
    assert done["tokens"]["input"] > 0 and done["tokens"]["output"] > 0
    assert {p["status"] for p in done["partitions"]} == {"done"} and len(done["partitions"]) == 4

    dagster_run = instance.get_run_by_id(results[0].run_id)
    assert dagster_run.tags[RUN_TAG] == run["id"]
    mats = instance.fetch_materializations(dg.AssetKey("generations"), limit=10).records
    assert len(mats) == 4
    meta = [{k: v.value for k, v in m.asset_materialization.metadata.items()} for m in mats]
    assert sum(m["engine_loaded"] for m in meta) == 1
    assert {m["engine_loads"] for m in meta} == {1} and {m["queue"] for m in meta} == {"in_process"}
    assert sum(m["rows"] for m in meta) == run["request_counts"]["total"]
    # cost: the CPU build holds no GPU; engine time within the step's wall time; tokens as the run's
    cost = done["cost"]
    assert cost["gpu_seconds"] == 0 and all(m["gpu_seconds"] == 0 for m in meta)
    assert 0 < cost["engine_seconds"] <= cost["wall_seconds"]
    assert (cost["input_tokens"], cost["output_tokens"]) == (done["tokens"]["input"], done["tokens"]["output"])
    assert list(cost["by_model"]) == ["tiny"] and cost["by_model"]["tiny"]["wall_seconds"] == cost["wall_seconds"]
    assert sum(p["wall_seconds"] for p in done["partitions"]) == pytest.approx(cost["wall_seconds"], abs=0.01)
    assert sum(m["input_tokens"] for m in meta) == cost["input_tokens"]
    checks = [e for e in results[0].get_asset_check_evaluations()]
    assert {c.check_name for c in checks} == {"generations_complete", "generations_healthy", "grades_valid",
                                              "metrics_valid", "no_regression"}
    assert all(c.passed for c in checks), [(c.check_name, c.metadata.get("failing")) for c in checks]
    # each partition's evaluation is about that partition's materialisation (what the UI links it to)
    latest = {m.partition_key: m.storage_id for m in mats}
    targets = {c.partition: c.target_materialization_data.storage_id for c in checks
               if c.check_name == "generations_complete"}
    assert targets == latest

    again = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "generation": {"max_gen_toks": 6},
        "max_workflow_sample_activities": 100})
    again_results = execute_in_process(instance, eval_home.catalog, eval_home.lake, again["id"],
                                       defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
    mats = instance.fetch_materializations(dg.AssetKey("generations"), limit=4).records
    meta = [{k: v.value for k, v in m.asset_materialization.metadata.items()} for m in mats]
    assert all(m["eval_run_id"] == again["id"] for m in meta)
    # with two materialisations per partition, each evaluation points at the latest (this run's)
    assert {c.partition: c.target_materialization_data.storage_id for r in again_results
            for c in r.get_asset_check_evaluations() if c.check_name == "generations_complete"} == {
        m.partition_key: m.storage_id for m in mats}
    assert sum(m["generated"] for m in meta) == 0  # everything came from the cache
    assert sum(m["from_cache"] for m in meta) == run["request_counts"]["total"]
    assert runs.get_run(eval_home.catalog, again["id"])["status"] == "completed"
    with pytest.raises(Conflict):
        runs.cancel_run(eval_home.catalog, again["id"])

    other_config = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "generation": {"max_gen_toks": 7},
        "task_ids": [_task_ids(eval_home)["ev_gen_a"]]})
    os.environ["EVAL_PIPELINE_WORKER_GPUS"] = "2"  # a worker that says it holds two GPUs
    try:
        execute_in_process(instance, eval_home.catalog, eval_home.lake,
                           other_config["id"], defs.resolve_job_def(GENERATION_JOB),
                           run_config=quiet_run_config)
    finally:
        del os.environ["EVAL_PIPELINE_WORKER_GPUS"]
    mat = instance.fetch_materializations(dg.AssetKey("generations"), limit=1).records[0]
    assert mat.asset_materialization.metadata["generated"].value == 12  # another setting: no cache hit
    cost = runs.get_run(eval_home.catalog, other_config["id"])["cost"]
    assert cost["gpu_seconds"] == pytest.approx(2 * cost["engine_seconds"], abs=0.002) and cost["gpu_seconds"] > 0
    assert "Cost of generation" in runs_report_markdown(runs.get_run(eval_home.catalog, other_config["id"]))


def test_sensor_turns_a_queued_run_into_tagged_dagster_runs(eval_home):
    instance = dg.DagsterInstance.ephemeral()
    ids = _task_ids(eval_home)
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "task_ids": [ids["ev_mc_a"], ids["ev_gen_b"]]})
    with dg.build_sensor_context(instance=instance, resources={"catalog": CatalogResource(),
                                                                "lake": LakeResource()}) as ctx:
        result = queued_runs(ctx)
    assert runs.get_run(eval_home.catalog, run["id"])["status"] == "in_progress"
    (request,) = result.run_requests
    assert request.tags[RUN_TAG] == run["id"]
    # new task keys are appended in the run's order (by key), so the run's tasks form one block
    assert request.tags["dagster/asset_partition_range_start"] == "tiny|ev_gen_b"
    assert request.tags["dagster/asset_partition_range_end"] == "tiny|ev_mc_a"
    added = {r.partitions_def_name: list(r.partition_keys) for r in result.dynamic_partitions_requests}
    assert added == {"model": ["tiny"], "task": ["ev_gen_b", "ev_mc_a"]}
    with dg.build_sensor_context(instance=instance, resources={"catalog": CatalogResource(),
                                                                "lake": LakeResource()}) as ctx:
        assert queued_runs(ctx).run_requests == []  # nothing queued any more


def test_sensor_splits_non_contiguous_tasks(eval_home):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("task", ["ev_mc_a", "ev_gen_a", "ev_mc_b"])
    ids = _task_ids(eval_home)
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "task_ids": [ids["ev_mc_a"], ids["ev_mc_b"]]})
    with dg.build_sensor_context(instance=instance, resources={"catalog": CatalogResource(),
                                                                "lake": LakeResource()}) as ctx:
        result = queued_runs(ctx)
    assert sorted(r.tags.get("dagster/partition") for r in result.run_requests) == ["tiny|ev_mc_a", "tiny|ev_mc_b"]
    assert {r.tags[RUN_TAG] for r in result.run_requests} == {run["id"]}


def test_a_backfill_without_an_eval_run_records_one(eval_home, quiet_run_config):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("model", ["tiny"])
    instance.add_dynamic_partitions("task", ["ev_gen_b"])
    result = defs.resolve_job_def(GENERATION_JOB).execute_in_process(
        instance=instance, partition_key="tiny|ev_gen_b", run_config=quiet_run_config)
    assert result.success
    (listed,) = runs.list_runs(eval_home.catalog)
    assert listed["status"] == "in_progress" and listed["models"] == ["tiny"]
    assert listed["request_counts"] == {"total": 10, "completed": 10, "failed": 0}
    assert listed["generation"] == {}  # the default generation config
    from eval_pipeline.service.launching import after_dagster_run

    after_dagster_run(eval_home.catalog, eval_home.lake, listed["id"], True)  # what the run status sensor does
    assert runs.get_run(eval_home.catalog, listed["id"])["status"] == "completed"


def test_cancel_a_queued_run_and_list_pages(eval_home):
    made = [runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id,
                                                                "models": ["tiny"]})["id"] for _ in range(3)]
    cancelled = runs.cancel_run(eval_home.catalog, made[0])
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] is not None
    assert [r["id"] for r in runs.list_runs(eval_home.catalog, status="queued")] == made[:0:-1]
    first = runs.list_runs(eval_home.catalog, limit=2)
    rest = runs.list_runs(eval_home.catalog, limit=2, after=first[-1]["id"])
    assert [r["id"] for r in first + rest] == made[::-1]


def test_cancel_stops_the_runs_unstarted_dagster_runs(eval_home):
    from eval_pipeline.service.launching import stop_dagster_runs

    instance = dg.DagsterInstance.ephemeral()
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"]})
    job = defs.resolve_job_def(GENERATION_JOB)
    mine = instance.create_run_for_job(job, tags={RUN_TAG: run["id"]}, status=dg.DagsterRunStatus.NOT_STARTED)
    other = instance.create_run_for_job(job, tags={RUN_TAG: "eval_run_other"}, status=dg.DagsterRunStatus.NOT_STARTED)
    runs.mark_started(eval_home.catalog, run["id"])
    assert runs.cancel_run(eval_home.catalog, run["id"])["status"] == "cancelled"  # nothing was running
    assert stop_dagster_runs(instance, run["id"]) == 1
    assert instance.get_run_by_id(mine.run_id).status == dg.DagsterRunStatus.CANCELED
    assert instance.get_run_by_id(other.run_id).status == dg.DagsterRunStatus.NOT_STARTED


def test_a_dead_workers_partitions_are_released_so_cancel_settles(eval_home):
    from eval_pipeline.service.launching import after_dagster_run

    ids = _task_ids(eval_home)
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "task_ids": [ids["ev_gen_a"], ids["ev_mc_a"]]})
    part = runs.start_partition(eval_home.catalog, run["id"], "tiny", ids["ev_gen_a"], "dagster-run-1")
    assert part.status == "running"
    # its worker is killed; the run is cancelled meanwhile: nobody is left to finish the partition
    assert runs.cancel_run(eval_home.catalog, run["id"])["status"] == "cancelling"
    # run monitoring marks the Dagster run failed; the failure sensor calls this
    after_dagster_run(eval_home.catalog, eval_home.lake, run["id"], False, "worker died",
                      dagster_run_id="dagster-run-1")
    settled = runs.get_run(eval_home.catalog, run["id"], partitions=True)
    assert settled["status"] == "cancelled" and settled["cancelled_at"] is not None
    assert {p["status"] for p in settled["partitions"]} == {"cancelled"}


def test_a_dead_workers_partitions_are_resumed(eval_home, quiet_run_config):
    from eval_pipeline.service.launching import after_dagster_run

    ids = _task_ids(eval_home)
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "task_ids": [ids["ev_gen_a"]]})
    runs.start_partition(eval_home.catalog, run["id"], "tiny", ids["ev_gen_a"], "dagster-run-2")
    after_dagster_run(eval_home.catalog, eval_home.lake, run["id"], False, "worker died",
                      dagster_run_id="dagster-run-2")
    failed = runs.get_run(eval_home.catalog, run["id"], partitions=True)
    assert failed["status"] == "failed" and failed["error"]["code"] == "dagster_run_failed"
    assert failed["partitions"][0]["status"] == "pending"
    runs.resume_run(eval_home.catalog, run["id"])
    (result,) = execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run["id"],
                                   defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
    assert result.success and runs.get_run(eval_home.catalog, run["id"])["status"] == "completed"


def test_grades_of_a_run_recompute_from_its_generations(eval_home, quiet_run_config):
    """The generation job also grades: multiple choice from the stored logprobs (recomputed here by
    hand), generations by exact match against the imported targets."""
    import pyarrow as pa

    from eval_pipeline.harness.jsonio import loads

    ids = _task_ids(eval_home)
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "task_ids": [ids["ev_mc_a"], ids["ev_gen_a"]],
        "generation": {"max_gen_toks": 4}})
    instance = dg.DagsterInstance.ephemeral()
    (result,) = execute_in_process(instance, eval_home.catalog, eval_home.lake,
                                   run["id"], defs.resolve_job_def(GENERATION_JOB),
                                   run_config=quiet_run_config)
    assert result.success
    mats = instance.fetch_materializations(dg.AssetKey("grades"), limit=10).records
    assert {m.partition_key for m in mats} == {"tiny|ev_mc_a", "tiny|ev_gen_a"}

    mc = next(p for p in runs.run_partitions(eval_home.catalog, run["id"]) if p.task_id == ids["ev_mc_a"])
    gens = pa.concat_tables([eval_home.lake.read_table(c["path"]) for c in mc.chunks]).to_pylist()
    table = eval_home.lake.read_table(f"grades/{run['id']}/tiny/ev_mc_a/rules.parquet").to_pylist()
    by_doc = {}
    for g in gens:
        by_doc.setdefault(g["doc_id"], []).append(g)
    expected = {}
    for doc_id, rows in by_doc.items():
        rows.sort(key=lambda r: r["request_index"])
        choices = [r["continuation"][1:] for r in rows]  # the target delimiter is " "
        pred = max(range(len(rows)), key=lambda i: rows[i]["logprob"])
        pred_norm = max(range(len(rows)), key=lambda i: rows[i]["logprob"] / len(choices[i]))
        gold = int(loads(eval_home.lake.read_table(
            _inputs(eval_home, ids["ev_mc_a"])).to_pylist()[doc_id]["target"]))
        expected[(doc_id, "acc")] = float(pred == gold)
        expected[(doc_id, "acc_norm")] = float(pred_norm == gold)
    assert {(g["doc_id"], g["metric"]): g["score"] for g in table} == expected
    assert all(g["filter"] == "none" and g["grader"] == "rule" and g["error"] is None for g in table)

    gen_grades = eval_home.lake.read_table(f"grades/{run['id']}/tiny/ev_gen_a/rules.parquet").to_pylist()
    assert len(gen_grades) == 12 * len({g["filter"] for g in gen_grades})
    assert {g["metric"] for g in gen_grades} == {"exact_match"}
    assert all(g["score"] in (0.0, 1.0) for g in gen_grades)


def _inputs(rt, task_id):
    with rt.catalog.session() as s:
        return s.scalar(select(t.File.path).join(t.TaskVersion, t.TaskVersion.inputs_file_id == t.File.id)
                        .where(t.TaskVersion.task_id == task_id))


def test_a_completed_run_carries_metrics_with_error_bars(eval_home, quiet_run_config):
    import math
    import statistics

    ids = _task_ids(eval_home)
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny"], "task_ids": [ids["ev_mc_a"], ids["ev_gen_b"]],
        "generation": {"max_gen_toks": 4}})
    (result,) = execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run["id"],
                                   defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
    assert result.success
    done = runs.get_run(eval_home.catalog, run["id"])
    assert done["status"] == "completed"
    assert set(done["metrics"]) == {"tiny"} and set(done["metrics"]["tiny"]) == {"ev_mc_a", "ev_gen_b"}
    grades = eval_home.lake.read_table(f"grades/{run['id']}/tiny/ev_mc_a/rules.parquet").to_pylist()
    for metric in ("acc", "acc_norm"):
        scores = [g["score"] for g in grades if g["metric"] == metric]
        m = done["metrics"]["tiny"]["ev_mc_a"][f"{metric},none"]
        assert m["n"] == len(scores) == 10 and m["failed"] == 0
        assert m["value"] == pytest.approx(sum(scores) / len(scores), abs=1e-12)
        assert m["stderr"] == pytest.approx(statistics.stdev(scores) / math.sqrt(len(scores)), abs=1e-12)
        assert 0 <= m["ci_low"] <= m["value"] <= m["ci_high"] <= 1  # Wilson's interval for 0/1 scores
    assert all(key.startswith("exact_match,") for key in done["metrics"]["tiny"]["ev_gen_b"])


def test_a_run_completes_only_when_every_dagster_runs_metrics_are_written(eval_home, quiet_run_config, tiny_model):
    """Dagster runs of one eval run run side by side on a deployment: when one succeeds while another has
    generated its partitions but not yet written their metrics, the eval run waits for it, neither
    completing without those metrics nor failing; a run that ended without its own metrics fails it."""
    from pathlib import Path

    from eval_pipeline.execution.finish import complete_if_done
    from eval_pipeline.models.registry import add_model
    from eval_pipeline.results.metrics import metrics_path

    add_model(eval_home.catalog, "tiny-2", {"backend": "vllm", "path": str(tiny_model), "dtype": "float32",
                                           "max_model_len": 256})
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny", "tiny-2"], "generation": {"max_gen_toks": 4},
        "task_ids": [_task_ids(eval_home)["ev_mc_b"]]})
    results = execute_in_process(dg.DagsterInstance.ephemeral(), eval_home.catalog, eval_home.lake, run["id"],
                                 defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
    assert len(results) == 2 and runs.get_run(eval_home.catalog, run["id"])["status"] == "completed"
    parts = {p.model: p for p in runs.run_partitions(eval_home.catalog, run["id"])}
    second = Path(eval_home.settings.lake_url) / metrics_path(run["id"], parts["tiny-2"].model_key,
                                                               parts["tiny-2"].task_key)

    def reopen():
        with eval_home.catalog.session() as s:
            s.get(t.Run, run["id"]).status = "in_progress"

    reopen()
    second.rename(second.with_suffix(".away"))  # tiny-2's Dagster run is still in its metrics step
    assert not complete_if_done(eval_home.catalog, eval_home.lake, run["id"],
                                dagster_run_id=parts["tiny"].dagster_run_id)
    assert runs.get_run(eval_home.catalog, run["id"])["status"] == "in_progress"
    second.with_suffix(".away").rename(second)  # ... and now it has written them and succeeds
    assert complete_if_done(eval_home.catalog, eval_home.lake, run["id"],
                            dagster_run_id=parts["tiny-2"].dagster_run_id)
    assert runs.get_run(eval_home.catalog, run["id"])["status"] == "completed"

    reopen()
    second.unlink()  # tiny-2's own Dagster run ended without writing them: nothing will
    assert not complete_if_done(eval_home.catalog, eval_home.lake, run["id"],
                                dagster_run_id=parts["tiny-2"].dagster_run_id)
    failed = runs.get_run(eval_home.catalog, run["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "metrics_missing"
