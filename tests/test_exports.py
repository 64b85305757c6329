"""Export tasks and bundles: every content combination to moto S3 and to the lake, checksums, a
failing upload and a failing build leave nothing visible, bad requests name the field, CLI and Dagster."""
import hashlib
import itertools
import json

import dagster as dg
import pyarrow.parquet as pq
import pytest
import s3fs
from helpers import QUIET_RUN_CONFIG, run_cli
from s3_fault_proxy import S3FaultProxy

from eval_pipeline import runs
from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.exports.tasks import CONTENT, bundle_location, create_export, get_export, run_export, verify_bundle
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import EXPORT_JOB, GENERATION_JOB
from eval_pipeline.service.launching import execute_in_process

COMBINATIONS = [list(c) for n in range(1, 6) for c in itertools.combinations(CONTENT, n)]


def _completed_run(home) -> dict:
    from sqlalchemy import select

    from eval_pipeline.stores.catalog import tables as t

    with home.catalog.session() as s:
        task_ids = [s.scalar(select(t.Task.id).where(t.Task.name == n)) for n in ("ev_mc_a", "ev_gen_a")]
    run = runs.create_run(home.catalog, home.lake, {
        "suite_id": home.suite_id, "models": ["tiny"], "task_ids": task_ids,
        "generation": {"max_gen_toks": 6, "instructions": "Answer briefly."}})
    execute_in_process(dg.DagsterInstance.ephemeral(), home.catalog, home.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB), run_config=QUIET_RUN_CONFIG)
    run = runs.get_run(home.catalog, run["id"])
    assert run["status"] == "completed"
    return run


def _expected_rows(home, run) -> dict:
    """(task, doc_id) -> what the bundle must say, from the run's own generations and grades."""
    out = {}
    for part in runs.run_partitions(home.catalog, run["id"]):
        gens = sorted((r for c in part.chunks for r in home.lake.read_table(c["path"]).to_pylist()),
                      key=lambda r: r["request_index"])
        grades = home.lake.read_table(f"grades/{run['id']}/tiny/{part.task_key}/rules.parquet").to_pylist()
        for g in gens:
            row = out.setdefault((part.task_key, g["doc_id"]), {"prompt": g["prompt"], "kind": g["request_kind"],
                                                               "output": g["output_text"], "metrics": {}})
            row.setdefault("lls", []).append(g["logprob"])
        for g in grades:
            if g["error"] is None:
                out[(part.task_key, g["doc_id"])]["metrics"][f"{g['metric']},{g['filter']}"] = g["score"]
    return out


@pytest.mark.parametrize("storage", ["system", "object"])
def test_every_content_combination_makes_a_verified_bundle(eval_home, storage, request):
    run = _completed_run(eval_home)
    expected = _expected_rows(eval_home, run)
    endpoint = request.getfixturevalue("s3_endpoint") if storage == "object" else None
    bucket = request.getfixturevalue("s3_bucket") if storage == "object" else None
    for content in COMBINATIONS:
        export = create_export(eval_home.catalog, {"run_id": run["id"], "storage_type": storage, "bucket": bucket,
                                                   "prefix": "bundles/nightly", "content": content})
        assert export["status"] == "queued"
        done = run_export(eval_home.catalog, eval_home.lake, export["id"], endpoint)
        assert done["status"] == "succeeded" and done["finished_at"] >= done["started_at"]
        fs, folder = bundle_location(eval_home.catalog, eval_home.lake, export["id"], endpoint)
        assert done["location"].rstrip("/").endswith(f"bundles/nightly/{export['id']}")
        assert verify_bundle(fs, folder) == []
        names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(folder, detail=False))
        wanted = ["manifest.json", "samples.jsonl", "samples.parquet"] + (["metrics.json"] if "metrics" in content
                                                                         else [])
        assert names == sorted(wanted)
        manifest = json.loads(fs.cat_file(f"{folder}/manifest.json"))
        assert manifest["content"] == content and manifest["suite"]["id"] == run["suite_id"]
        assert manifest["run"]["id"] == run["id"] and manifest["models"] == ["tiny"]
        with fs.open(f"{folder}/samples.parquet", "rb") as f:
            table = pq.read_table(f)
        assert table.column_names == ["model", "task", "doc_id", *content]
        lines = [json.loads(x) for x in fs.cat_file(f"{folder}/samples.jsonl").decode().splitlines()]
        assert [list(x) for x in lines] == [table.column_names] * len(lines)
        assert len(lines) == table.num_rows == len(expected) == 22  # 10 multiple-choice + 12 generated docs
        by_file = {f["name"]: f for f in manifest["files"]}
        assert by_file["samples.parquet"]["rows"] == 22
        for name, entry in by_file.items():
            assert hashlib.sha256(fs.cat_file(f"{folder}/{name}")).hexdigest() == entry["sha256"]
        for row in lines:
            want = expected[(row["task"], row["doc_id"])]
            if "prompt" in content:
                assert row["prompt"] == want["prompt"]
            if "prediction" in content and want["kind"] != "loglikelihood":
                assert row["prediction"] == want["output"]
            if "metrics" in content:
                assert row["metrics"] == want["metrics"] and row["metrics"]
            if "system" in content:
                assert row["system"] == "Answer briefly."
            if "completion" in content:
                assert isinstance(row["completion"], str)
        if "metrics" in content:
            assert json.loads(fs.cat_file(f"{folder}/metrics.json"))["metrics"] == run["metrics"]
    # a multiple-choice prediction is the highest-loglikelihood choice, as acc scores it
    mc = [r for r in lines if r["task"] == "ev_mc_a"]
    accs = [r["metrics"]["acc,none"] for r in mc]
    assert [float(r["prediction"] == r["completion"]) for r in mc] == accs


def test_tampered_bundle_fails_verification(eval_home):
    run = _completed_run(eval_home)
    export = create_export(eval_home.catalog, {"run_id": run["id"], "content": ["prediction"]})
    run_export(eval_home.catalog, eval_home.lake, export["id"])
    fs, folder = bundle_location(eval_home.catalog, eval_home.lake, export["id"])
    fs.pipe_file(f"{folder}/samples.jsonl", b"{}\n")
    assert verify_bundle(fs, folder) == ["samples.jsonl: sha256 differs from the manifest"]
    fs.rm(f"{folder}/manifest.json")
    assert verify_bundle(fs, folder) == ["manifest.json is missing"]


def test_a_failing_upload_leaves_nothing_visible(eval_home, s3_endpoint, s3_bucket):
    """The S3 server fails the manifest's PUT (500 InternalError, every retry): the export fails with the
    reason and the files already uploaded are removed."""
    run = _completed_run(eval_home)
    proxy = S3FaultProxy(s3_endpoint, "/manifest.json")
    try:
        export = create_export(eval_home.catalog, {"run_id": run["id"], "storage_type": "object", "bucket": s3_bucket,
                                                   "content": ["prompt", "prediction", "metrics"]})
        with pytest.raises(Exception):
            run_export(eval_home.catalog, eval_home.lake, export["id"], proxy.url)
    finally:
        proxy.close()
    assert proxy.failed_puts >= 1
    failed = get_export(eval_home.catalog, export["id"])
    assert failed["status"] == "failed" and failed["location"] is None
    assert "InternalError" in failed["error"]["message"] or "internal error" in failed["error"]["message"].lower()
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    assert fs.find(s3_bucket) == []
    # the same task, retried against a healthy server, succeeds and replaces nothing but itself
    again = run_export(eval_home.catalog, eval_home.lake, export["id"], s3_endpoint)
    assert again["status"] == "succeeded" and again["error"] is None
    assert len(fs.find(s3_bucket)) == 4  # samples.parquet, samples.jsonl, metrics.json, manifest.json


def test_a_failing_build_leaves_nothing_in_the_lake(eval_home):
    run = _completed_run(eval_home)
    part = runs.run_partitions(eval_home.catalog, run["id"])[0]
    eval_home.lake.fs.rm(f"{eval_home.lake.root}/{part.chunks[0]['path']}")
    export = create_export(eval_home.catalog, {"run_id": run["id"], "content": ["prediction"]})
    with pytest.raises(FileNotFoundError):
        run_export(eval_home.catalog, eval_home.lake, export["id"])
    assert get_export(eval_home.catalog, export["id"])["status"] == "failed"
    assert eval_home.lake.list("exports/") == []


@pytest.mark.parametrize("body,field", [
    ({"storage_type": "object", "content": ["prompt"]}, "bucket"),
    ({"storage_type": "system", "bucket": "my-bucket", "content": ["prompt"]}, "bucket"),
    ({"content": []}, "content"),
    ({"content": ["prompt", "answer"]}, "content[1]"),
    ({"content": ["prompt", "prompt"]}, "content"),
    ({"storage_type": "BOS", "content": ["prompt"]}, "storage_type"),
    ({"prefix": "a/../b", "content": ["prompt"]}, "prefix"),
    ({"content": ["prompt"], "extra": 1}, "extra"),
])
def test_bad_export_requests_name_the_field(eval_home, body, field):
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"]})
    with pytest.raises(InvalidInput) as e:
        create_export(eval_home.catalog, {"run_id": run["id"], **body})
    assert e.value.field == field


def test_only_a_completed_run_exports(eval_home):
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"]})
    with pytest.raises(Conflict, match="queued"):
        create_export(eval_home.catalog, {"run_id": run["id"], "content": ["prompt"]})
    with pytest.raises(NotFound):
        create_export(eval_home.catalog, {"run_id": "eval_run_missing", "content": ["prompt"]})


def test_cli_exports_through_dagster_with_the_checksum_check(eval_home, s3_endpoint, s3_bucket, quiet_run_config):
    run = _completed_run(eval_home)
    home = eval_home.settings.home
    env = {"EVAL_PIPELINE_EXPORT_S3_ENDPOINT_URL": s3_endpoint}
    made = run_cli(home, "exports", "create", run["id"], "--storage", "object", "--bucket", s3_bucket,
                   "--prefix", "team-a", "--content", "prompt,prediction,completion,metrics,system", env_extra=env)
    assert made.returncode == 0, made.stderr
    export = json.loads(made.stdout)
    assert export["status"] == "succeeded" and export["location"] == f"s3://{s3_bucket}/team-a/{export['id']}/"
    got = json.loads(run_cli(home, "exports", "get", export["id"]).stdout)
    assert got == export
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    assert verify_bundle(fs, f"{s3_bucket}/team-a/{export['id']}") == []
    bad = run_cli(home, "exports", "create", run["id"], "--storage", "object", "--content", "prompt")
    assert bad.returncode == 2 and json.loads(bad.stderr)["error"]["message"].startswith("bucket")
    # The Dagster job materialises the export's partition and its check verifies the manifest.
    queued = create_export(eval_home.catalog, {"run_id": run["id"], "content": ["metrics"]})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("export", [queued["id"]])
    result = defs.resolve_job_def(EXPORT_JOB).execute_in_process(instance=instance, partition_key=queued["id"],
                                                                 run_config=quiet_run_config)
    (check,) = result.get_asset_check_evaluations()
    assert result.success and check.passed and check.check_name == "bundle_checksums_valid"
    assert get_export(eval_home.catalog, queued["id"])["status"] == "succeeded"


def test_sensor_launches_each_queued_export_once(eval_home):
    from eval_pipeline.orchestration.sensors import queued_export_tasks
    from resources import CatalogResource

    run = _completed_run(eval_home)
    export = create_export(eval_home.catalog, {"run_id": run["id"], "content": ["prompt"]})
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance, resources={"catalog": CatalogResource()}) as ctx:
        result = queued_export_tasks(ctx)
    assert [(r.run_key, r.partition_key) for r in result.run_requests] == [(export["id"], export["id"])]
    assert result.dynamic_partitions_requests[0].partition_keys == [export["id"]]
    assert get_export(eval_home.catalog, export["id"])["status"] == "running"  # claimed by the tick
    with dg.build_sensor_context(instance=instance, resources={"catalog": CatalogResource()}) as ctx:
        assert queued_export_tasks(ctx).run_requests == []
