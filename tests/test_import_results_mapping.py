"""Issue 11: a file holding only lm-eval's `results` mapping imports as a results file of unknown vintage."""
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from eval_pipeline.harness.results import parse_results, results_mapping_problem
from eval_pipeline.historical.importer import import_results
from eval_pipeline.stores.catalog import tables as t

NEGOTIATION = Path("v0.4.13dev_negotiationtom/Qwen__Qwen3-8B")
NEGOTIATION_TS = "2026-07-08T16-04-34.219874"
C11 = Path(__file__).resolve().parents[2] / "shared/fixtures/lm-eval-cases/c11_groups_multifilter/in/default_model"

# JSON files people keep beside their results that are not results.
NOT_RESULTS = {
    "empty.json": {},
    "config.json": {"model": "hf", "model_args": "pretrained=x", "batch_size": 8, "gen_kwargs": {"top_p": 1}},
    "predictions.json": [{"doc_id": 0, "resps": [["a"]], "acc": 1.0}],
    "one_sample.json": {"doc_id": 0, "doc": {"q": "x"}, "acc,none": 1.0},
    "expected.json": {"task_a": {"strict-match": 0.5, "flexible-extract": 1.0}},  # values are not metric dicts
    "old_style.json": {"task_a": {"acc": 0.5, "acc_stderr": 0.1}},  # no "metric,filter" key
    "labels.json": {"task_a": {"acc,none": "high"}},
    "all_na.json": {"task_a": {"acc,none": "N/A"}},
}


def _req(url, **kw):
    return {"source": {"type": "path", "url": str(url), **kw.pop("source", {})}, **kw}


def _write_mapping(src: Path, dest: Path) -> dict:
    mapping = json.loads(src.read_text())["results"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(mapping, indent=2))
    return mapping


def _metrics(catalog):
    with catalog.session() as s:
        return {(m.task_name, m.metric, m.filter): m for m in s.scalars(select(t.HistoricalMetric))}


@pytest.mark.parametrize("name", [f"results_{NEGOTIATION_TS}.json", f"scores_{NEGOTIATION_TS}.json"])
def test_a_results_mapping_imports_with_its_paired_samples(sqlite_catalog, lake, tmp_path, real_fixtures, name):
    folder = tmp_path / "src" / "Qwen__Qwen3-8B"
    _write_mapping(real_fixtures / NEGOTIATION / f"results_{NEGOTIATION_TS}.json", folder / name)
    samples = f"samples_negotiationtom_belief_{NEGOTIATION_TS}.jsonl"
    shutil.copy(real_fixtures / NEGOTIATION / samples, folder / samples)
    for other, doc in NOT_RESULTS.items():
        (folder / other).write_text(json.dumps(doc))

    r = import_results(sqlite_catalog, lake, _req(tmp_path / "src", suite_name="kept"))
    assert (r.discovered_files, r.imported_runs, r.imported_samples, r.errors) == (1, 1, 20, [])
    with sqlite_catalog.session() as s:
        (run,) = s.scalars(select(t.HistoricalRun)).all()
        assert (run.path, run.model, run.harness_version, run.model_args, run.config, run.git_hash,
                run.evaluated_at, run.n_samples) == (
            f"Qwen__Qwen3-8B/{name}", "Qwen__Qwen3-8B", None, None, {}, None, None, 20)
        tasks = set(s.scalars(select(t.Task.name)))
    assert tasks == {"negotiationtom_belief", "negotiationtom_desire", "negotiationtom_intention"}

    metrics = _metrics(sqlite_catalog)
    belief = metrics[("negotiationtom_belief", "acc", "none")]
    assert (belief.value, belief.stderr, belief.n_samples, belief.is_group) == (0.45, 0.11413288653790232, 20, False)
    assert belief.recomputed == pytest.approx(0.45) and belief.recomputed_matches is True
    micro = metrics[("negotiationtom_intention", "micro_f1", "none")]
    assert (micro.value, micro.stderr) == (0.30188679245283023, None)  # "N/A"
    group = metrics[("negotiationtom", "acc", "none")]
    assert (group.is_group, group.task_id, group.value, group.stderr) == (True, None, 0.525, 0.08009040943964843)

    again = import_results(sqlite_catalog, lake, _req(tmp_path / "src", suite_name="kept"))
    assert (again.imported_runs, again.skipped_runs, again.errors) == (0, 1, [])


def test_groups_of_a_mapping_are_not_tasks(sqlite_catalog, lake, tmp_path):
    """c11: metric-less groups, a '::' subgroup, the ' ' placeholder group, leaves with two filters."""
    folder = tmp_path / "src" / "default_model"
    (ts,) = {p.name.removeprefix("results_").removesuffix(".json") for p in C11.glob("results_*.json")}
    _write_mapping(C11 / f"results_{ts}.json", folder / f"results_{ts}.json")
    for p in C11.glob("samples_*.jsonl"):
        shutil.copy(p, folder / p.name)

    r = import_results(sqlite_catalog, lake, _req(tmp_path / "src"))
    assert (r.imported_runs, r.imported_samples, r.errors) == (1, 8, [])
    with sqlite_catalog.session() as s:
        assert set(s.scalars(select(t.Task.name))) == {
            "mmlu_flan_cot_zeroshot_abstract_algebra", "mmlu_flan_cot_zeroshot_astronomy"}
    metrics = _metrics(sqlite_catalog)
    assert {k: (m.value, m.recomputed_matches) for k, m in metrics.items()} == {
        ("mmlu_flan_cot_zeroshot_abstract_algebra", "exact_match", "strict-match"): (0.5, True),
        ("mmlu_flan_cot_zeroshot_abstract_algebra", "exact_match", "flexible-extract"): (1.0, True),
        ("mmlu_flan_cot_zeroshot_astronomy", "exact_match", "strict-match"): (0.0, True),
        ("mmlu_flan_cot_zeroshot_astronomy", "exact_match", "flexible-extract"): (0.5, True),
    }


def test_a_fixed_name_mapping_pairs_legacy_samples(sqlite_catalog, lake, tmp_path, real_fixtures):
    """0.4.2: the group is known by its subtasks' indented aliases; samples are `<model_args>_<task>.jsonl`."""
    legacy = real_fixtures / "v0.4.2_results-json/out"
    _write_mapping(legacy / "results.json", tmp_path / "src" / "gpt35" / "results.json")
    shutil.copy(legacy / "model__gpt-3.5-turbo-0125_wmdp_bio.jsonl", tmp_path / "src" / "gpt35")
    r = import_results(sqlite_catalog, lake, _req(tmp_path / "src"))
    assert (r.imported_runs, r.imported_samples, r.errors) == (1, 100, [])
    metrics = _metrics(sqlite_catalog)
    assert metrics[("wmdp", "exact_match", "none")].is_group
    assert not metrics[("wmdp_bio", "exact_match", "none")].is_group
    with sqlite_catalog.session() as s:
        assert s.scalar(select(t.HistoricalRun.model)) == "gpt35"
        assert set(s.scalars(select(t.Task.name))) == {"wmdp_bio", "wmdp_chem", "wmdp_cyber"}


def test_a_named_file_that_is_no_mapping_is_reported(sqlite_catalog, lake, tmp_path):
    (tmp_path / "src" / "m").mkdir(parents=True)
    (tmp_path / "src" / "m" / "results_2026-01-01T00-00-00.json").write_text(
        json.dumps({"task_a": {"acc,none": 0.5}, "task_b": {"acc,none": "high"}}))
    r = import_results(sqlite_catalog, lake, _req(tmp_path / "src"))
    assert (r.discovered_files, r.imported_runs) == (1, 0)
    (err,) = r.errors
    assert err["path"] == "m/results_2026-01-01T00-00-00.json"
    assert "not an lm-eval results file" in err["reason"] and "'task_b'['acc,none']" in err["reason"]


@pytest.mark.parametrize("name", sorted(NOT_RESULTS))
def test_other_json_is_no_results_mapping(name):
    assert results_mapping_problem(NOT_RESULTS[name]) is not None
    with pytest.raises(ValueError, match="no 'results' object|not a JSON object"):
        parse_results(NOT_RESULTS[name], f"m/{name}")


def test_group_rules_on_a_bare_mapping():
    mapping = {
        "agg": {"alias": "agg", "acc,none": 0.5, "acc_stderr,none": 0.1,
                "sample_count": {"acc,none": 4}},  # 0.4.13 aggregate, listed anywhere
        "g": {"alias": "g", "acc,none": 0.5},  # followed by an indented subtask
        "t1": {"alias": " - t1", "acc,none": 0.5},
        "t2": {"alias": " - t2", "acc,none": float("nan"), "acc_stderr,none": None},
        "bare": {"alias": "bare", "name": "bare", "sample_len": 2},  # a group aggregating nothing
        "placeholder": {" ": " ", "alias": " - placeholder"},
        "top": {"alias": "top", "acc,none": 1},
    }
    r = parse_results(mapping, "x/y/scores.json")
    assert {task.name for task in r.tasks if task.is_group} == {"agg", "g", "bare", "placeholder"}
    assert [task.name for task in r.leaf_tasks] == ["t1", "t2", "top"]
    assert (r.model, r.harness_version, r.config, r.timestamp) == ("y", None, {}, None)
    assert [(m.value, m.stderr) for m in r.tasks[3].metrics] == [(None, None)]

