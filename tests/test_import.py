"""The historical import on local folders: counts, metrics, idempotency, dry runs, versions, bad files."""
import json

import pytest
from helpers import corrupt_json, generated_folder, snapshot
from sqlalchemy import func, select

from eval_pipeline.errors import InvalidInput, NotFound
from eval_pipeline.historical.importer import import_results
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.suites.versions import get_suite

NEGOTIATION = "v0.4.13dev_negotiationtom/Qwen__Qwen3-8B/results_2026-07-08T16-04-34.219874.json"
MASAKHANER = "v0.4.10dev_masakhaner/google__gemma-2b/results_2026-01-16T15-23-47.285735.json"


def _req(url, **kw):
    return {"source": {"type": "path", "url": str(url), **kw.pop("source", {})}, **kw}


def _metric(catalog, task, metric, filt="none"):
    with catalog.session() as s:
        return s.execute(select(t.HistoricalMetric).where(
            t.HistoricalMetric.task_name == task, t.HistoricalMetric.metric == metric,
            t.HistoricalMetric.filter == filt)).scalar_one()


def test_every_real_vintage_imports(catalog, lake, real_fixtures):
    r = import_results(catalog, lake, _req(real_fixtures, suite_name="real"))
    assert (r.discovered_files, r.imported_runs, r.skipped_runs, r.imported_samples, r.errors) == (4, 4, 0, 305, [])
    assert (r.suite_version, r.created_suite, r.created_suite_version) == (1, True, True)
    with catalog.session() as s:
        runs = {run.model: run for run in s.scalars(select(t.HistoricalRun))}
        assert {m: run.n_samples for m, run in runs.items()} == {
            "EleutherAI/pythia-v1.1-160m": 0, "gpt-3.5-turbo-0125": 100, "google/gemma-2b": 185,
            "Qwen/Qwen3-8B": 20}
        assert runs["Qwen/Qwen3-8B"].harness_version == "0.4.13.dev0"
        assert s.scalar(select(func.count()).select_from(t.Task)) == 65 + 3 + 1 + 3
    belief = _metric(catalog, "negotiationtom_belief", "acc")
    assert (belief.value, belief.stderr, belief.n_samples) == (0.45, 0.11413288653790232, 20)
    assert belief.recomputed == pytest.approx(0.45) and belief.recomputed_matches is True
    assert _metric(catalog, "wmdp_bio", "exact_match").recomputed_matches is True
    f1 = _metric(catalog, "masakhaner_luo_prompt_1", "f1", "flexible-extract")
    assert (f1.stderr, f1.recomputed, f1.n_samples) == (None, None, 185)  # "N/A"; f1 is no mean
    group = _metric(catalog, "negotiationtom", "acc")
    assert group.is_group and group.task_id is None and group.value == 0.525
    pythia_acc = _metric(catalog, "hendrycksTest-high_school_geography", "acc")
    assert pythia_acc.value == 0.2828282828282828 and pythia_acc.recomputed is None

    suite = get_suite(catalog, r.suite_id)
    tasks = {tk["name"]: tk for tk in suite["versions"][0]["manifest"]["tasks"]}
    assert len(tasks) == 72
    assert {n for n, tk in tasks.items() if tk["inputs_file_id"]} == {
        "wmdp_bio", "masakhaner_luo_prompt_1", "negotiationtom_belief"}
    assert tasks["negotiationtom_belief"]["n_docs"] == 20 and tasks["masakhaner_luo_prompt_1"]["n_docs"] == 185


def test_task_inputs_hold_the_historical_prompts(sqlite_catalog, lake, real_fixtures):
    import_results(sqlite_catalog, lake, _req(real_fixtures, source={"files": [NEGOTIATION]}))
    with sqlite_catalog.session() as s:
        path = s.scalar(select(t.File.path).where(t.File.purpose == "task_inputs"))
    inputs = lake.read_table(path).to_pylist()
    samples = [json.loads(line) for line in (real_fixtures / NEGOTIATION).parent.glob(
        "samples_*.jsonl").__next__().read_text().splitlines()]
    assert [r["doc_id"] for r in inputs] == [s["doc_id"] for s in samples]
    first = json.loads(samples[0]["arguments"]) if isinstance(samples[0]["arguments"], str) else samples[0]["arguments"]
    assert inputs[0]["prompt"] == first["gen_args_0"]["arg_0"]
    assert inputs[0]["continuations"] == [first[f"gen_args_{i}"]["arg_1"] for i in range(len(first))]
    assert inputs[0]["request_kind"] == "loglikelihood" and inputs[0]["target"] == json.dumps(samples[0]["target"])


def test_reimport_skips_everything_and_adds_no_rows(catalog, lake, real_fixtures):
    first = import_results(catalog, lake, _req(real_fixtures, suite_name="real"))
    rows, files = snapshot(catalog, lake)
    again = import_results(catalog, lake, _req(real_fixtures, suite_name="real"))
    assert (again.imported_runs, again.skipped_runs, again.imported_samples) == (0, 4, 0)
    assert (again.suite_id, again.suite_version, again.created_suite, again.created_suite_version) == (
        first.suite_id, 1, False, False)
    rows2, files2 = snapshot(catalog, lake)
    assert files2 == files
    assert {k: v for k, v in rows2.items() if k != "imports"} == {k: v for k, v in rows.items() if k != "imports"}


def test_dry_run_counts_and_writes_nothing(catalog, lake, real_fixtures):
    before = snapshot(catalog, lake)
    dry = import_results(catalog, lake, _req(real_fixtures, suite_name="real", dry_run=True))
    assert snapshot(catalog, lake) == before
    assert (dry.dry_run, dry.discovered_files, dry.imported_runs, dry.imported_samples) == (True, 4, 4, 305)
    assert (dry.created_suite, dry.created_suite_version, dry.suite_version) == (True, True, 1)
    real = import_results(catalog, lake, _req(real_fixtures, suite_name="real"))
    after_real = snapshot(catalog, lake)
    dry_again = import_results(catalog, lake, _req(real_fixtures, suite_name="real", dry_run=True))
    assert snapshot(catalog, lake) == after_real
    assert (dry_again.skipped_runs, dry_again.created_suite_version, dry_again.suite_id) == (4, False, real.suite_id)


def test_new_tasks_make_a_new_immutable_version(catalog, lake, real_fixtures):
    v1 = import_results(catalog, lake, _req(real_fixtures, suite_name="s", source={"files": [NEGOTIATION]}))
    assert (v1.suite_version, v1.imported_runs) == (1, 1)
    with pytest.raises(InvalidInput) as e:
        import_results(catalog, lake, _req(real_fixtures, suite_id=v1.suite_id, create_missing_tasks=False,
                                           source={"files": [MASAKHANER]}))
    assert e.value.field == "create_missing_tasks" and "masakhaner_luo_prompt_1" in e.value.message
    v2 = import_results(catalog, lake, _req(real_fixtures, suite_id=v1.suite_id, source={"files": [MASAKHANER]}))
    assert (v2.suite_version, v2.created_suite_version, v2.created_suite) == (2, True, False)
    versions = get_suite(catalog, v1.suite_id)["versions"]
    assert [len(v["manifest"]["tasks"]) for v in versions] == [3, 4]
    same = import_results(catalog, lake, _req(real_fixtures, suite_id=v1.suite_id, create_missing_tasks=False,
                                              source={"files": [NEGOTIATION, MASAKHANER]}))
    assert (same.skipped_runs, same.suite_version, same.created_suite_version) == (2, 2, False)


def test_bad_files_are_reported_and_block_nothing_else(catalog, lake, tmp_path):
    root = generated_folder(tmp_path / "src")
    (root / "broken").mkdir()
    (root / "broken" / "results_2026-03-01T00-00-00.json").write_text('{"results": {"x": ')
    (root / "notes").mkdir()
    (root / "notes" / "results_summary.json").write_text('{"hello": "world"}')
    bad_samples = root / "org__model-b" / "samples_gen_math_2026-02-02T00-00-00.000001.jsonl"
    lines = bad_samples.read_text().splitlines()
    lines[4] = lines[4][:40]
    bad_samples.write_text("\n".join(lines) + "\n")

    r = import_results(catalog, lake, _req(root, suite_name="g"))
    assert (r.discovered_files, r.imported_runs, r.imported_samples) == (4, 1, 21)
    reasons = {e["path"]: e for e in r.errors}
    assert "invalid JSON" in reasons["broken/results_2026-03-01T00-00-00.json"]["reason"]
    assert "no 'results' object" in reasons["notes/results_summary.json"]["reason"]
    bad = reasons["org__model-b/samples_gen_math_2026-02-02T00-00-00.000001.jsonl"]
    assert bad["line"] == 5 and "invalid JSON" in bad["reason"]
    with catalog.session() as s:
        assert s.scalars(select(t.HistoricalRun.model)).all() == ["org/model-a"]
    assert len(lake.list("historical_samples")) == 1  # the rejected run left no file behind


def test_paths_that_leave_the_source_are_rejected(sqlite_catalog, lake, tmp_path):
    root = generated_folder(tmp_path / "src")
    for source, field in [({"path_prefix": "../etc"}, "source.path_prefix"),
                          ({"files": ["ok.json", "/etc/passwd"]}, "source.files[1]"),
                          ({"files": ["a/../../x.json"]}, "source.files[0]")]:
        with pytest.raises(InvalidInput) as e:
            import_results(sqlite_catalog, lake, _req(root, source=source))
        assert e.value.field == field
    with pytest.raises(NotFound, match="nope/results.json"):
        import_results(sqlite_catalog, lake, _req(root, source={"files": ["nope/results.json"]}))


@pytest.mark.parametrize("body,field", [
    ({"suite_name": ""}, "suite_name"), ({"limit_files": 0}, "limit_files"), ({"limit_files": 101}, "limit_files"),
    ({"suite_description": "x" * 10001}, "suite_description"), ({"surprise": 1}, "surprise"),
    ({"source": {"type": "huggingface", "repo": "no-slash"}}, "source.repo"),
])
def test_request_fields_are_validated(sqlite_catalog, lake, body, field):
    with pytest.raises(InvalidInput) as e:
        import_results(sqlite_catalog, lake, body)
    assert e.value.field == field


def test_limit_and_prefix_choose_files(sqlite_catalog, lake, tmp_path):
    root = generated_folder(tmp_path / "src", models=("o/m1", "o/m2", "o/m3"))
    r = import_results(sqlite_catalog, lake, _req(root, limit_files=2, dry_run=True))
    assert (r.discovered_files, r.imported_runs) == (2, 2)
    r = import_results(sqlite_catalog, lake, _req(root, source={"path_prefix": "o__m3/"}, dry_run=True))
    assert (r.discovered_files, r.imported_samples) == (1, 21)
    with pytest.raises(NotFound, match="no-such-folder"):
        import_results(sqlite_catalog, lake, _req(root, source={"path_prefix": "no-such-folder/"}))


def test_changed_content_imports_only_what_changed(sqlite_catalog, lake, tmp_path):
    root = generated_folder(tmp_path / "src")
    import_results(sqlite_catalog, lake, _req(root, suite_name="g"))
    results_b = next((root / "org__model-b").glob("results_*.json"))
    corrupt_json(results_b, lambda d: d["config"].update(note="re-run"))
    r = import_results(sqlite_catalog, lake, _req(root, suite_name="g"))
    assert (r.imported_runs, r.skipped_runs, r.created_suite_version) == (1, 1, False)


def test_recomputed_means_catch_a_wrong_aggregate(sqlite_catalog, lake, tmp_path):
    from eval_pipeline.historical.reading import metrics_frame
    from eval_pipeline.quality.checks import check_agreement

    root = generated_folder(tmp_path / "src", models=("o/m",))
    results = next((root / "o__m").glob("results_*.json"))
    corrupt_json(results, lambda d: d["results"]["gen_mc"].update(
        {"acc,none": d["results"]["gen_mc"]["acc,none"] + 0.01}))
    r = import_results(sqlite_catalog, lake, _req(root))
    assert _metric(sqlite_catalog, "gen_mc", "acc").recomputed_matches is False
    assert _metric(sqlite_catalog, "gen_mc", "acc_norm").recomputed_matches is True
    v = check_agreement(metrics_frame(sqlite_catalog, import_id=r.import_id))
    assert not v.success and v.failures[0]["unexpected"] == 1


def test_same_prompts_from_another_model_reuse_the_task_version(sqlite_catalog, lake, tmp_path):
    root = generated_folder(tmp_path / "src")
    r = import_results(sqlite_catalog, lake, _req(root))
    with sqlite_catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(t.TaskVersion)) == 2
        assert s.scalar(select(func.count()).where(t.File.purpose == "task_inputs")) == 2
    assert r.imported_runs == 2


def test_import_from_s3_into_an_s3_lake(sqlite_catalog, tmp_path, s3_endpoint, s3_bucket):
    import s3fs

    from eval_pipeline.stores.lake import Lake

    root = generated_folder(tmp_path / "src")
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.put(str(root), f"{s3_bucket}/results", recursive=True)
    lake = Lake(f"s3://{s3_bucket}/lake", s3_endpoint_url=s3_endpoint)
    r = import_results(sqlite_catalog, lake, _req(f"s3://{s3_bucket}/results", suite_name="s3"),
                       s3_endpoint_url=s3_endpoint)
    assert (r.imported_runs, r.imported_samples, r.errors) == (2, 42, [])
    assert len(lake.list("historical_samples")) == 2 and lake.exists(f"suites/{r.suite_id}/manifest.json")
    again = import_results(sqlite_catalog, lake, _req(f"s3://{s3_bucket}/results", suite_name="s3"),
                           s3_endpoint_url=s3_endpoint)
    assert again.skipped_runs == 2


def test_file_urls_read_like_folders(sqlite_catalog, lake, tmp_path):
    root = generated_folder(tmp_path / "src")
    r = import_results(sqlite_catalog, lake, _req(root.as_uri(), suite_name="f"))
    assert (r.imported_runs, r.imported_samples, r.source["type"]) == (2, 42, "path")
    with pytest.raises(NotFound, match="source folder"):
        import_results(sqlite_catalog, lake, _req((tmp_path / "absent").as_uri()))


def test_an_import_that_brings_nothing_creates_no_suite(sqlite_catalog, lake, tmp_path):
    from eval_pipeline.suites.versions import list_suites

    (tmp_path / "src" / "m").mkdir(parents=True)
    (tmp_path / "src" / "m" / "results_2026-01-01T00-00-00.json").write_text("{not json")
    r = import_results(sqlite_catalog, lake, _req(tmp_path / "src", suite_name="never"))
    assert (r.created_suite, r.suite_id, r.imported_runs, len(r.errors)) == (False, None, 0, 1)
    assert list_suites(sqlite_catalog) == [] and lake.list() == []


def test_the_samples_check_catches_duplicates_missing_targets_and_non_finite_scores():
    import pandas as pd

    from eval_pipeline.quality.checks import check_samples

    good = pd.DataFrame({"run_id": ["r", "r"], "task": ["t", "t"], "doc_id": [0, 1], "filter": ["none"] * 2,
                         "target": ['"A"', '"B"'], "score_values": [[1.0], [0.0]]})
    assert check_samples(good).success
    bad = good.assign(doc_id=[0, 0], target=['"A"', "null"], score_values=[[1.0], [float("nan")]])
    failed = {f["expectation"].split("(")[0]: f["unexpected"] for f in check_samples(bad).failures}
    assert failed == {"expect_compound_columns_to_be_unique": 2, "expect_column_values_to_not_be_null": 1,
                      "expect_column_values_to_be_in_set": 1}


def test_credentials_in_results_files_never_reach_the_catalog(sqlite_catalog, lake, tmp_path):
    from helpers import snapshot

    root = generated_folder(tmp_path / "src", models=("o/a", "o/b"))
    secrets = ["sk-live-51a9", "hf_model_args_77", "pw-in-config-3"]
    a, b = (next((root / m).glob("results_*.json")) for m in ("o__a", "o__b"))
    corrupt_json(a, lambda d: d["config"].update(
        model_args=f"model=o/a,api_key={secrets[0]},base_url=http://x", password=secrets[2]))
    corrupt_json(b, lambda d: d["config"].update(model_args={"pretrained": "o/b", "hf_token": secrets[1],
                                                             "nested": {"auth_header": secrets[2]}}))
    r = import_results(sqlite_catalog, lake, _req(root))
    assert (r.imported_runs, r.errors) == (2, [])
    rows, _ = snapshot(sqlite_catalog, lake)
    assert not [s for s in secrets if s in repr(rows)]
    with sqlite_catalog.session() as s:
        args = {run.model: run.model_args for run in s.scalars(select(t.HistoricalRun))}
    assert args["o/a"] == "model=o/a,api_key=[redacted],base_url=http://x"
    assert args["o/b"] == {"pretrained": "o/b", "hf_token": "[redacted]", "nested": {"auth_header": "[redacted]"}}
