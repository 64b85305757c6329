"""Cancel mid-run and kill -9 mid-run, through the CLI in a subprocess with the real engine: a cancel
stops after the chunk in flight; a resume skips every chunk already written."""
import json
import os
import signal
import subprocess
import time

import dagster as dg
import pyarrow as pa
import pytest
from helpers import cli_command, cli_env, generated_folder, run_cli

from eval_pipeline import runs
from eval_pipeline.demo.synthetic import SyntheticTask
from eval_pipeline.historical.importer import import_results
from eval_pipeline.models.registry import add_model
from eval_pipeline.stores.runtime import open_runtime
from eval_pipeline.stores.settings import Settings

DOCS, CHUNK = 1500, 100


@pytest.fixture
def big_home(tmp_path, tiny_model):
    home = tmp_path / "home"
    rt = open_runtime(Settings.from_env({"EVAL_PIPELINE_HOME": str(home)}))
    data = generated_folder(tmp_path / "data", models=("org/m",),
                            tasks=[SyntheticTask("big_gen", "generate_until", DOCS)])
    suite = import_results(rt.catalog, rt.lake, {"source": {"type": "path", "url": str(data)}}).suite_id
    add_model(rt.catalog, "tiny", {"backend": "vllm", "path": str(tiny_model), "dtype": "float32",
                                   "max_model_len": 256})
    rt.suite_id = suite
    yield rt
    rt.catalog.dispose()


def _start(rt) -> subprocess.Popen:
    return subprocess.Popen(cli_command("runs", "create", "--suite-id", rt.suite_id, "--model", "tiny",
                                        "--max-gen-toks", "48", "--until", "ZZZZ", "--no-cache",
                                        "--max-workflow-sample-activities", str(CHUNK), "--wait"),
                            env=cli_env(rt.settings.home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _chunks(rt) -> list[str]:
    return [p for p in rt.lake.list("generations") if p.endswith(".parquet")]


def _wait_for_chunks(rt, proc, n, timeout=240) -> None:
    deadline = time.time() + timeout
    while len(_chunks(rt)) < n:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no chunk appeared"
        time.sleep(0.02)


def test_kill_nine_mid_run_then_resume_generates_nothing_twice(big_home):
    rt = big_home
    proc = _start(rt)
    _wait_for_chunks(rt, proc, 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written_before = len(_chunks(rt))
    assert 2 <= written_before < DOCS // CHUNK
    (run,) = runs.list_runs(rt.catalog)
    assert run["status"] == "in_progress"  # nobody was left to say otherwise

    out = run_cli(rt.settings.home, "runs", "resume", run["id"], "--wait")
    assert out.returncode == 0, out.stderr[-3000:]
    done = json.loads(out.stdout)
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": DOCS, "completed": DOCS, "failed": 0}

    os.environ["DAGSTER_HOME"] = str(rt.settings.dagster_home)
    try:
        instance = dg.DagsterInstance.get()
        mat = instance.fetch_materializations(dg.AssetKey("generations"), limit=1).records[0]
        meta = {k: v.value for k, v in mat.asset_materialization.metadata.items()}
    finally:
        os.environ.pop("DAGSTER_HOME")
    assert meta["chunks_skipped"] == written_before
    assert meta["chunks_written"] == DOCS // CHUNK - written_before
    assert meta["generated"] == DOCS - CHUNK * written_before  # only what no chunk held yet
    table = pa.concat_tables([rt.lake.read_table(p, columns=["request_index"]) for p in _chunks(rt)])
    assert sorted(table.column("request_index").to_pylist()) == list(range(DOCS))


def test_cancel_mid_run_stops_after_the_chunk_in_flight(big_home):
    rt = big_home
    proc = _start(rt)
    _wait_for_chunks(rt, proc, 1)
    (run,) = runs.list_runs(rt.catalog)
    # The core's cancel, called here: the CLI's would first spend seconds importing, while the
    # run races on (the CLI command is the same call plus stopping Dagster runs; see below).
    assert runs.cancel_run(rt.catalog, run["id"])["status"] == "cancelling"
    at_cancel = len(_chunks(rt))
    proc.wait(timeout=300)
    final = runs.get_run(rt.catalog, run["id"], partitions=True)
    assert final["status"] == "cancelled" and final["cancelled_at"] is not None
    assert len(_chunks(rt)) <= at_cancel + 1 < DOCS // CHUNK
    assert final["request_counts"]["completed"] == CHUNK * len(_chunks(rt))
    again = run_cli(rt.settings.home, "runs", "cancel", run["id"])
    assert again.returncode == 2 and json.loads(again.stderr)["error"]["code"] == "conflict"
