"""Export format `lm-eval`: a completed run as lm-evaluation-harness 0.4.13's own results and samples files,
to the lake and to S3 (moto), through the core, the CLI, the Dagster job and Qianfan's API; the round trip
(export, import into a new suite) gives back the run's per-sample scores and metrics; and, on tasks imported
from the real lm_eval CLI's output (../shared/fixtures/lm-eval-cases/*/ref/in), the exported samples lines are
the CLI's own, byte for byte where the model's answers are the same (canned endpoints), field for field and
within 1e-5 for the tiny model's loglikelihoods."""
import hashlib
import json
import math
import re
import time
from pathlib import Path

import dagster as dg
import pytest
import s3fs
from helpers import QUIET_RUN_CONFIG, run_cli
from sqlalchemy import select, update
from test_exports import _completed_run

from eval_pipeline import runs
from eval_pipeline.errors import InvalidInput, NotFound
from eval_pipeline.exports.lm_eval_format import file_timestamp
from eval_pipeline.exports.tasks import bundle_location, create_export, get_export, run_export, verify_bundle
from eval_pipeline.historical.importer import import_results
from eval_pipeline.models.registry import add_model
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import EXPORT_JOB, GENERATION_JOB
from eval_pipeline.service.launching import execute_in_process
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.file_access import file_content, get_file

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(\.\d+)?$")
SAMPLE_KEYS = ["doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics", "doc_hash",
               "prompt_hash", "target_hash"]
# The top-level keys of a results file of the lm_eval 0.4.13 CLI (c05's ref/in), in its order.
RESULTS_KEYS = ["results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
                "config", "git_hash", "date", "pretty_env_info", "transformers_version", "lm_eval_version",
                "upper_git_hash", "tokenizer_pad_token", "tokenizer_eos_token", "tokenizer_bos_token", "eot_token_id",
                "max_length", "task_hashes", "model_source", "model_name", "model_name_sanitized",
                "system_instruction", "system_instruction_sha", "fewshot_as_multiturn", "chat_template",
                "chat_template_sha", "total_evaluation_time_seconds"]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _files(fs, folder: str) -> dict[str, bytes]:
    """relative name -> bytes of every file of a published export."""
    return {p[len(folder.rstrip("/")) + 1:]: fs.cat_file(p) for p in fs.find(folder)}


def _lines(data: bytes) -> list[dict]:
    return [json.loads(x) for x in data.decode().splitlines()]


def _rule_grades(home, run_id: str) -> dict[tuple, float]:
    """(task, doc, filter, metric) -> score of every graded sample of the run's one model."""
    out = {}
    with home.catalog.session() as s:
        names = {task.id: task.name for task in s.scalars(select(t.Task))}
    for part in runs.run_partitions(home.catalog, run_id):
        for g in home.lake.read_table(f"grades/{run_id}/{part.model_key}/{part.task_key}/rules.parquet").to_pylist():
            if g["error"] is None:
                out[(names[part.task_id], g["doc_id"], g["filter"], g["metric"])] = g["score"]
    return out


def _generations(home, run_id: str) -> dict[tuple[str, int], list[dict]]:
    out: dict = {}
    with home.catalog.session() as s:
        names = {task.id: task.name for task in s.scalars(select(t.Task))}
    for part in runs.run_partitions(home.catalog, run_id):
        rows = sorted((r for c in part.chunks for r in home.lake.read_table(c["path"]).to_pylist()),
                      key=lambda r: r["request_index"])
        for r in rows:
            out.setdefault((names[part.task_id], r["doc_id"]), []).append(r)
    return out


def _imported(home, result) -> tuple[t.HistoricalRun, list[t.HistoricalMetric], list[dict]]:
    """The one historical run an import made, its metrics and its samples rows."""
    with home.catalog.session() as s:
        (hist,) = s.scalars(select(t.HistoricalRun).where(t.HistoricalRun.import_id == result.import_id)).all()
        metrics = s.scalars(select(t.HistoricalMetric).where(t.HistoricalMetric.run_id == hist.id)).all()
        path = s.get(t.File, hist.samples_file_id).path
        s.expunge_all()
    return hist, metrics, home.lake.read_table(path).to_pylist()


def assert_round_trip(home, run: dict, result, model: str = "tiny") -> None:
    """The import of an export gives back the run's per-sample scores and its metrics, and its own
    recomputed means agree with them."""
    assert result.imported_runs == 1 and not result.errors, result.errors
    hist, metrics, samples = _imported(home, result)
    assert hist.model == model and hist.harness_version == "0.4.13"
    per_sample = {(r["task"], r["doc_id"], r["filter"], name): value for r in samples
                  for name, value in zip(r["score_names"], r["score_values"])}
    assert per_sample == _rule_grades(home, run["id"]) and per_sample
    want = {(task, *key.split(",", 1)): (m["value"], m["stderr"])
            for task, by_key in run["metrics"][model].items() for key, m in by_key.items()}
    got = {(m.task_name, m.metric, m.filter): (m.value, m.stderr) for m in metrics}
    assert got == want
    assert all(m.recomputed is not None and m.recomputed_matches for m in metrics)
    assert all(not m.is_group for m in metrics)


def test_lm_eval_export_to_the_lake_is_lm_evals_layout_and_round_trips(eval_home):
    run = _completed_run(eval_home)
    export = create_export(eval_home.catalog, {"run_id": run["id"], "format": "lm-eval", "prefix": "lm"})
    assert export["status"] == "queued" and export["format"] == "lm-eval" and export["content"] == []
    done = run_export(eval_home.catalog, eval_home.lake, export["id"])
    assert done["status"] == "succeeded" and done["location"].rstrip("/").endswith(f"exports/lm/{export['id']}")
    fs, folder = bundle_location(eval_home.catalog, eval_home.lake, export["id"])
    assert verify_bundle(fs, folder) == []
    files = _files(fs, folder)
    ts = file_timestamp(runs.get_run(eval_home.catalog, run["id"])["completed_at"])
    assert TS.match(ts)
    assert sorted(files) == ["manifest.json", f"tiny/results_{ts}.json", f"tiny/samples_ev_gen_a_{ts}.jsonl",
                             f"tiny/samples_ev_mc_a_{ts}.jsonl"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["format"] == "lm-eval" and manifest["run"]["id"] == run["id"]
    assert {f["name"]: f["rows"] for f in manifest["files"]} == {
        f"tiny/results_{ts}.json": None, f"tiny/samples_ev_gen_a_{ts}.jsonl": 12,
        f"tiny/samples_ev_mc_a_{ts}.jsonl": 10}
    # system storage: every file (manifest included) is served by id, to the run's org only
    assert {f["name"] for f in done["files"]} == set(files) and all(f["file_id"] for f in done["files"])
    nested = next(f for f in done["files"] if f["name"].endswith(".jsonl"))
    assert get_file(eval_home.catalog, nested["file_id"], org_id="org_default")["sha256"] == nested["sha256"]
    pieces, media, name = file_content(eval_home.catalog, eval_home.lake, nested["file_id"], org_id="org_default")
    assert b"".join(pieces) == files[nested["name"]] and media == "application/jsonl" and name.startswith("samples_")
    with pytest.raises(NotFound):
        get_file(eval_home.catalog, nested["file_id"], org_id="globex")

    results = json.loads(files[f"tiny/results_{ts}.json"])
    assert list(results) == RESULTS_KEYS
    metrics = run["metrics"]["tiny"]
    for task, n in (("ev_mc_a", 10), ("ev_gen_a", 12)):
        entry = results["results"][task]
        assert list(entry)[:3] == ["name", "alias", "sample_len"] and entry["sample_len"] == n
        assert {k: v for k, v in entry.items() if "," in k} == {
            **{key: m["value"] for key, m in metrics[task].items()},
            **{key.replace(",", "_stderr,"): m["stderr"] for key, m in metrics[task].items()}}
        assert results["n-samples"][task] == {"original": n, "effective": n}
        assert results["versions"][task] == 1.0 and results["n-shot"][task] is None
    assert results["higher_is_better"] == {"ev_gen_a": {"exact_match": True},
                                           "ev_mc_a": {"acc": True, "acc_norm": True}}
    assert results["configs"]["ev_mc_a"]["output_type"] == "multiple_choice"
    assert results["configs"]["ev_gen_a"]["filter_list"] == [
        {"name": "strict-match", "filter": [{"function": "take_first"}]}]
    assert results["group_subtasks"] == {} and "groups" not in results
    assert results["model_name"] == "tiny" and results["model_name_sanitized"] == "tiny"
    assert results["model_source"] == "vllm" and results["config"]["model"] == "vllm"
    assert results["config"]["model_args"]["dtype"] == "float32" and results["config"]["gen_kwargs"] == {
        "max_gen_toks": 6}
    assert results["system_instruction"] == "Answer briefly." and results["system_instruction_sha"] == sha(
        "Answer briefly.")
    assert results["lm_eval_version"] == "0.4.13" and results["max_length"] == 256
    assert results["tokenizer_bos_token"][0] and results["eot_token_id"] is not None

    gens, grades = _generations(eval_home, run["id"]), _rule_grades(eval_home, run["id"])
    for task in ("ev_mc_a", "ev_gen_a"):
        lines = _lines(files[f"tiny/samples_{task}_{ts}.jsonl"])
        hashes = "".join(x["doc_hash"] + x["prompt_hash"] + x["target_hash"] for x in lines)
        assert results["task_hashes"][task] == sha(hashes)
        for line in lines:
            rows = gens[(task, line["doc_id"])]
            assert list(line) == SAMPLE_KEYS + line["metrics"]
            assert line["doc_hash"] == sha(json.dumps(line["doc"], indent=2, ensure_ascii=False))
            assert line["prompt_hash"] == sha(line["arguments"]["gen_args_0"]["arg_0"]) == rows[0]["prompt_hash"]
            assert line["target_hash"] == sha(line["target"]) and isinstance(line["target"], str)
            for m in line["metrics"]:
                assert line[m] == grades[(task, line["doc_id"], line["filter"], m)]
            if task == "ev_mc_a":  # one loglikelihood request per choice: [[["ll", "is_greedy"]], ...]
                assert line["metrics"] == ["acc", "acc_norm"] and line["filter"] == "none"
                assert [a["arg_1"] for a in line["arguments"].values()] == [r["continuation"] for r in rows]
                assert line["resps"] == [[[str(r["logprob"]), str(r["is_greedy"])]] for r in rows]
                assert [float(x[0][0]) for x in line["resps"]] == [r["logprob"] for r in rows]
                assert line["filtered_resps"] == [x[0] for x in line["resps"]]
                assert line["target"] == str(line["doc"]["answer"])
            else:  # generate_until: [[text]], filtered by the task's strict-match chain (take_first)
                assert line["metrics"] == ["exact_match"] and line["filter"] == "strict-match"
                assert line["resps"] == [[rows[0]["output_text"]]]
                assert line["filtered_resps"] == [rows[0]["output_text"]]
                assert line["arguments"]["gen_args_0"]["arg_1"] == {"until": ["\n\n", "Q:"], "max_gen_toks": 6,
                                                                  "do_sample": False, "temperature": 0.0}

    # the round trip: the export imported into a new suite gives back the run's scores and metrics
    result = import_results(eval_home.catalog, eval_home.lake, {"source": {"type": "path", "url": folder},
                                                                "suite_name": "round trip"})
    assert result.imported_samples == 22 and result.created_suite
    assert_round_trip(eval_home, run, result)
    # imported again from the same place: nothing new
    again = import_results(eval_home.catalog, eval_home.lake, {"source": {"type": "path", "url": folder},
                                                               "suite_name": "round trip"})
    assert again.imported_runs == 0 and again.skipped_runs == 1


def test_lm_eval_export_to_s3_by_the_cli_and_the_dagster_job(eval_home, s3_endpoint, s3_bucket, quiet_run_config):
    run = _completed_run(eval_home)
    home = eval_home.settings.home
    env = {"EVAL_PIPELINE_EXPORT_S3_ENDPOINT_URL": s3_endpoint}
    made = run_cli(home, "exports", "create", run["id"], "--storage", "s3", "--bucket", s3_bucket, "--prefix",
                   "lm-eval/nightly", "--format", "lm-eval", env_extra=env)
    assert made.returncode == 0, made.stderr
    export = json.loads(made.stdout)
    assert export["status"] == "succeeded" and export["format"] == "lm-eval" and export["storage_type"] == "object"
    assert export["location"] == f"s3://{s3_bucket}/lm-eval/nightly/{export['id']}/"
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    folder = f"{s3_bucket}/lm-eval/nightly/{export['id']}"
    assert verify_bundle(fs, folder) == []
    names = sorted(_files(fs, folder))
    assert names[0] == "manifest.json" and len(names) == 4
    assert [n.split("_")[0] for n in names[1:]] == ["tiny/results", "tiny/samples", "tiny/samples"]
    # lm-eval's layout on S3 imports straight back
    result = import_results(eval_home.catalog, eval_home.lake,
                            {"source": {"type": "path", "url": f"s3://{folder}"}, "suite_name": "from s3"},
                            s3_endpoint_url=s3_endpoint)
    assert_round_trip(eval_home, run, result)
    # an unknown format is bad input naming the field, and nothing is created
    bad = run_cli(home, "exports", "create", run["id"], "--format", "csv")
    assert bad.returncode == 2 and json.loads(bad.stderr)["error"]["message"].startswith("format")
    with eval_home.catalog.session() as s:
        assert s.scalar(select(t.Export.id).where(t.Export.id != export["id"])) is None
    # the Dagster job materialises an lm-eval export's partition and its check verifies the manifest
    queued = create_export(eval_home.catalog, {"run_id": run["id"], "format": "lm-eval"})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("export", [queued["id"]])
    job = defs.resolve_job_def(EXPORT_JOB).execute_in_process(instance=instance, partition_key=queued["id"],
                                                               run_config=quiet_run_config)
    (check,) = job.get_asset_check_evaluations()
    assert job.success and check.passed and check.check_name == "bundle_checksums_valid"
    (materialization,) = job.asset_materializations_for_node("export_bundles")
    assert materialization.metadata["format"].value == "lm-eval" and materialization.metadata["rows"].value == 22
    assert get_export(eval_home.catalog, queued["id"])["status"] == "succeeded"


@pytest.mark.parametrize("body,field", [
    ({"format": "csv"}, "format"),
    ({"format": "lm-eval", "content": ["prompt"]}, "content"),
    ({"format": "bundle"}, "content"),
    ({}, "content"),
    ({"format": "lm-eval", "storage_type": "object"}, "bucket"),
])
def test_bad_lm_eval_export_requests_name_the_field(eval_home, body, field):
    run = runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"]})
    with pytest.raises(InvalidInput) as e:
        create_export(eval_home.catalog, {"run_id": run["id"], **body})
    assert e.value.field == field


def test_lm_eval_export_through_qianfans_api(eval_home):
    from conftest import serving
    from test_api_qianfan import _signed

    from eval_pipeline.stores.keys import create_key, master_secret

    run = _completed_run(eval_home)  # before the server: its worker would take a queued run too
    with eval_home.catalog.session() as s:  # the API serves org acme (see conftest.serving)
        s.execute(update(t.Run).where(t.Run.id == run["id"]).values(org_id="acme"))
    pair = create_key(eval_home.catalog, "acme", kind="aksk", master=master_secret(eval_home.settings.home))
    with serving(eval_home, execute=True) as url:
        _qianfan_lm_eval_export(eval_home, run, lambda action, params: _signed(
            url, pair["access_key"], pair["secret_key"], params, action=action))


def _qianfan_lm_eval_export(eval_home, run: dict, call) -> None:
    bad = call("CreateEvalResultExportTask", {"evalId": run["id"], "exportFormat": "csv"})
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidParameter"
    assert bad.json()["message"].startswith("exportFormat")
    both = call("CreateEvalResultExportTask", {"evalId": run["id"], "exportFormat": "lm-eval",
                                               "exportContent": ["prompt"]})
    assert both.status_code == 400 and both.json()["message"].startswith("exportContent")
    made = call("CreateEvalResultExportTask", {"evalId": run["id"], "exportFormat": "lm-eval"})
    assert made.status_code == 200, made.text
    task_id = made.json()["result"]["taskId"]
    for _ in range(600):  # the server's worker runs the export job
        state = call("DescribeEvalResultExportTask", {"taskId": task_id}).json()["result"]
        if state["state"] in ("Succeeded", "Failed"):
            break
        time.sleep(0.1)
    assert state["state"] == "Succeeded", state
    assert state["exportFormat"] == "lm-eval" and state["exportContent"] == []
    assert sorted(f["name"].split("_")[0] for f in state["files"]) == [
        "manifest.json", "tiny/results", "tiny/samples", "tiny/samples"]
    assert verify_bundle(*bundle_location(eval_home.catalog, eval_home.lake, task_id)) == []


# --- against the real lm_eval CLI's files -----------------------------------------------------------------

def _ref(case: Path) -> tuple[dict, dict[str, bytes]]:
    """The lm_eval CLI's results and samples files (by task) of a case's ref/in."""
    (results,) = (case / "ref" / "in").rglob("results_*.json")
    samples = {re.match(r"samples_(.+)_[^_]+\.jsonl$", p.name).group(1): p.read_bytes()
               for p in (case / "ref" / "in").rglob("samples_*.jsonl")}
    return json.loads(results.read_text()), samples


def _run(home, suite_id: str, models: list[str], tasks: list[str], **body) -> dict:
    with home.catalog.session() as s:
        task_ids = [s.scalar(select(t.Task.id).where(t.Task.name == n)) for n in tasks]
    run = runs.create_run(home.catalog, home.lake, {"suite_id": suite_id, "models": models, "task_ids": task_ids,
                                                    **body})
    execute_in_process(dg.DagsterInstance.ephemeral(), home.catalog, home.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB), run_config=QUIET_RUN_CONFIG)
    run = runs.get_run(home.catalog, run["id"])
    assert run["status"] == "completed", run["error"]
    return run


def _export(home, run_id: str) -> tuple[dict[str, bytes], str]:
    export = create_export(home.catalog, {"run_id": run_id, "format": "lm-eval"})
    assert run_export(home.catalog, home.lake, export["id"])["status"] == "succeeded"
    fs, folder = bundle_location(home.catalog, home.lake, export["id"])
    assert verify_bundle(fs, folder) == []
    return _files(fs, folder), folder


def test_exported_lines_are_the_lm_eval_clis_own(eval_home, cases):
    """Tasks imported from the CLI's real output, run again by the product and exported: with the same
    answers (canned endpoints) the samples lines are the CLI's byte for byte and the task hashes and results
    entries equal, for repeats with self-consistency filters (c14), predict-only (c10, lm-eval's `bypass`
    shape), and two models in one run; on the tiny model (c05, a task no rule can grade) every field but the
    answers' last digits is the CLI's and no score is made up."""
    from canned_openai import CannedOpenAI

    c14, c10, c05 = (cases / "c14_repeats_self_consistency", cases / "c10_predict_only", cases / "c05_mc2_nan")
    for case in (c14, c10, c05):
        result = import_results(eval_home.catalog, eval_home.lake, {
            "source": {"type": "path", "url": str(case / "ref" / "in")}, "suite_name": "lm-eval refs"})
        assert result.imported_runs == 1 and not result.errors, result.errors
    suite_id = result.suite_id
    fakes = (c14 / "ref" / "fake.json", c10 / "ref" / "fake.json")
    with CannedOpenAI(*fakes) as one, CannedOpenAI(*fakes) as two:
        add_model(eval_home.catalog, "org/canned-1", {"backend": "openai", "base_url": one.url})
        add_model(eval_home.catalog, "org/canned-2", {"backend": "openai", "base_url": two.url})
        run = _run(eval_home, suite_id, ["org/canned-1", "org/canned-2"], ["ref_sc", "ref_po"],
                   generation_concurrency=1)
    files, folder = _export(eval_home, run["id"])
    ts = file_timestamp(runs.get_run(eval_home.catalog, run["id"])["completed_at"])
    assert sorted(files) == ["manifest.json"] + [f"org__canned-{i}/{kind}_{ts}.json{ext}" for i in (1, 2)
                                                 for kind, ext in (("results", ""), ("samples_ref_po", "l"),
                                                                   ("samples_ref_sc", "l"))]
    for model in ("org/canned-1", "org/canned-2"):
        sanitized = model.replace("/", "__")
        results = json.loads(files[f"{sanitized}/results_{ts}.json"])
        assert results["model_name"] == model and results["model_source"] == "local-completions"
        for case, task in ((c14, "ref_sc"), (c10, "ref_po")):
            ref_results, ref_samples = _ref(case)
            assert files[f"{sanitized}/samples_{task}_{ts}.jsonl"] == ref_samples[task], (model, task)
            for key in ("results", "n-samples", "versions", "higher_is_better", "task_hashes"):
                assert results[key][task] == ref_results[key][task], (model, task, key)
        assert results["configs"]["ref_po"]["metadata"]["eval_pipeline"]["gradability"]["status"] == "predict-only"
    # the import reads lm-eval's predict-only shape back as no value, as it reads the CLI's
    back = import_results(eval_home.catalog, eval_home.lake, {"source": {"type": "path", "url": folder},
                                                              "suite_name": "refs again"})
    assert back.imported_runs == 2 and not back.errors
    with eval_home.catalog.session() as s:
        po = s.scalars(select(t.HistoricalMetric).join(t.HistoricalRun).where(
            t.HistoricalRun.import_id == back.import_id, t.HistoricalMetric.task_name == "ref_po")).all()
        assert [(m.metric, m.value, m.stderr) for m in po] == [("bypass", None, None)] * 2

    # the tiny model on vLLM (the CLI's `tiny-model`), on a task whose scoring is Python that lm-eval's registry
    # lacks: not gradable
    run = _run(eval_home, suite_id, ["tiny"], ["ref_mc2"])
    assert runs.get_run(eval_home.catalog, run["id"], partitions=True)["partitions"][0]["grading"]["status"] == \
        "not-gradable"
    files, _ = _export(eval_home, run["id"])
    ts = file_timestamp(runs.get_run(eval_home.catalog, run["id"])["completed_at"])
    ref_results, ref_samples = _ref(c05)
    results = json.loads(files[f"tiny/results_{ts}.json"])
    assert list(results) == RESULTS_KEYS == list(ref_results)
    assert results["results"]["ref_mc2"] == {"name": "ref_mc2", "alias": "ref_mc2", "sample_len": 3}
    assert results["task_hashes"] == ref_results["task_hashes"]
    assert results["configs"]["ref_mc2"]["metadata"]["eval_pipeline"]["gradability"]["status"] == "not-gradable"
    ours, theirs = _lines(files[f"tiny/samples_ref_mc2_{ts}.jsonl"]), _lines(ref_samples["ref_mc2"])
    assert len(ours) == len(theirs) == 3
    for mine, ref in zip(ours, theirs):
        assert list(mine) == SAMPLE_KEYS and mine["metrics"] == []
        for key in ("doc_id", "doc", "target", "arguments", "filter", "doc_hash", "prompt_hash", "target_hash"):
            assert mine[key] == ref[key], key
        for got, want in zip(mine["resps"], ref["resps"], strict=True):
            assert float(got[0][0]) == pytest.approx(float(want[0][0]), abs=1e-5) and got[0][1] == want[0][1]
        assert mine["filtered_resps"] == [r[0] for r in mine["resps"]]



def test_loglikelihood_and_rolling_items_are_lm_evals(eval_home, cases):
    """A single-continuation loglikelihood task (c03's lambada: acc as lm-eval's int, perplexity's item the
    loglikelihood) and a loglikelihood_rolling one graded by lm-eval's own process_results (c04's wikitext:
    (ll, words | bytes) items, no stderr), exported and imported back."""
    for case in ("c03_lambada_legacy", "c04_wikitext_rolling"):
        result = import_results(eval_home.catalog, eval_home.lake, {
            "source": {"type": "path", "url": str(cases / case / "in")}, "suite_name": "loglikelihoods"})
        assert result.imported_runs == 1 and not result.errors, result.errors
    run = _run(eval_home, result.suite_id, ["tiny"], ["lambada_openai", "wikitext"])
    files, folder = _export(eval_home, run["id"])
    ts = file_timestamp(runs.get_run(eval_home.catalog, run["id"])["completed_at"])
    results = json.loads(files[f"tiny/results_{ts}.json"])
    gens, grades = _generations(eval_home, run["id"]), _rule_grades(eval_home, run["id"])
    metrics = run["metrics"]["tiny"]

    lambada = _lines(files[f"tiny/samples_lambada_openai_{ts}.jsonl"])
    for line in lambada:
        (row,) = gens[("lambada_openai", line["doc_id"])]
        assert line["resps"] == [[[str(row["logprob"]), str(row["is_greedy"])]]]
        assert line["arguments"] == {"gen_args_0": {"arg_0": row["prompt"], "arg_1": row["continuation"]}}
        assert line["perplexity"] == row["logprob"] and line["acc"] == int(row["is_greedy"])
        assert isinstance(line["acc"], int) and line["metrics"] == ["perplexity", "acc"]
    assert results["results"]["lambada_openai"]["perplexity,none"] == metrics["lambada_openai"]["perplexity,none"][
        "value"]
    assert isinstance(results["results"]["lambada_openai"]["perplexity_stderr,none"], float)
    assert results["higher_is_better"]["lambada_openai"] == {"perplexity": False, "acc": True}

    wikitext = _lines(files[f"tiny/samples_wikitext_{ts}.jsonl"])
    assert wikitext
    for line in wikitext:
        (row,) = gens[("wikitext", line["doc_id"])]
        assert line["resps"] == [[str(row["logprob"])]] and line["filtered_resps"] == [str(row["logprob"])]
        assert line["arguments"] == {"gen_args_0": {"arg_0": row["prompt"]}}
        assert line["metrics"] == ["word_perplexity", "byte_perplexity", "bits_per_byte"]
        for m in line["metrics"]:  # (ll, words | bytes), of which the grade is the doc's own aggregate
            ll, weight = line[m]
            assert ll == row["logprob"] and isinstance(weight, int) and weight > 0
            alone = -ll / weight / math.log(2) if m == "bits_per_byte" else math.exp(-ll / weight)
            assert alone == pytest.approx(grades[("wikitext", line["doc_id"], "none", m)], rel=1e-12)
        assert line["byte_perplexity"][1] == line["bits_per_byte"][1]
    entry = results["results"]["wikitext"]
    for m in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert entry[f"{m},none"] == metrics["wikitext"][f"{m},none"]["value"]
        assert entry[f"{m}_stderr,none"] == "N/A"  # lm-eval gives these weighted aggregates no stderr
    assert results["configs"]["wikitext"]["output_type"] == "loglikelihood_rolling"

    back = import_results(eval_home.catalog, eval_home.lake, {"source": {"type": "path", "url": folder},
                                                              "suite_name": "loglikelihoods again"})
    hist, imported, samples = _imported(eval_home, back)
    per_sample = {(r["task"], r["doc_id"], r["filter"], n): v for r in samples
                  for n, v in zip(r["score_names"], r["score_values"])}
    # the import keeps numbers per sample; (ll, weight) items are structures only the aggregation reads
    assert per_sample == {k: v for k, v in grades.items() if k[0] == "lambada_openai"}
    assert {(m.task_name, m.metric, m.filter): (m.value, m.stderr) for m in imported} == {
        (task, *key.split(",", 1)): (v["value"], v["stderr"]) for task, by in metrics.items() for key, v in by.items()}
    assert [m.recomputed_matches for m in imported if m.metric == "acc"] == [True]
