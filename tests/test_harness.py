"""Readers for every lm-eval vintage, on the real third-party files and on generated ones."""
import io
import json

import pytest

from eval_pipeline.errors import MalformedFile
from eval_pipeline.harness.layout import pair_samples, sanitize_model_name
from eval_pipeline.harness.results import parse_results
from eval_pipeline.harness.samples import iter_records, normalise, request_of
from eval_pipeline.stores.sources import ListedFile


def _results(real_fixtures, rel):
    return parse_results(json.loads((real_fixtures / rel).read_text()), rel)


def test_v03_results_have_no_filter_suffix(real_fixtures):
    r = _results(real_fixtures, "v0.3_pythia/160m-5shot_step143000.json")
    assert r.model == "EleutherAI/pythia-v1.1-160m" and r.harness_version == "0.3.x"
    assert len(r.leaf_tasks) == 65
    geo = next(t for t in r.tasks if t.name == "hendrycksTest-high_school_geography")
    acc = next(m for m in geo.metrics if m.metric == "acc")
    assert (acc.filter, acc.value, acc.stderr) == ("none", 0.2828282828282828, 0.0320877955878675)
    lambada = next(t for t in r.tasks if t.name == "lambada_openai")
    assert {m.metric for m in lambada.metrics} == {"ppl", "acc"}


def test_v042_groups_are_not_tasks(real_fixtures):
    r = _results(real_fixtures, "v0.4.2_results-json/out/results.json")
    assert [t.name for t in r.leaf_tasks] == ["wmdp_bio", "wmdp_chem", "wmdp_cyber"]
    assert [t.name for t in r.tasks if t.is_group] == ["wmdp"]
    assert r.model == "gpt-3.5-turbo-0125" and r.timestamp is None


def test_na_stderr_is_missing_not_zero(real_fixtures):
    r = _results(real_fixtures, "v0.4.10dev_masakhaner/google__gemma-2b/"
                                "results_2026-01-16T15-23-47.285735.json")
    (m,) = r.tasks[0].metrics
    assert (m.metric, m.filter, m.value, m.stderr) == ("f1", "flexible-extract", 0.0656270305392884, None)
    assert r.harness_version == "0.4.10.dev0" and r.timestamp == "2026-01-16T15-23-47.285735"


def test_v0413_group_only_in_groups_block(real_fixtures):
    r = _results(real_fixtures, "v0.4.13dev_negotiationtom/Qwen__Qwen3-8B/"
                                "results_2026-07-08T16-04-34.219874.json")
    assert r.model == "Qwen/Qwen3-8B" and r.git_hash == "eb02ba327fb7c76475b12c8cdcf88623ec013a24"
    belief = next(t for t in r.tasks if t.name == "negotiationtom_belief")
    assert belief.n_samples == 20 and belief.request_kind == "loglikelihood"
    assert belief.mean_metrics() == {"acc"}
    assert {t.name for t in r.tasks if t.is_group} == {"negotiationtom"}


def test_samples_json_array_and_jsonl_read_alike(real_fixtures):
    path = real_fixtures / "v0.4.2_results-json/out/model__gpt-3.5-turbo-0125_wmdp_bio.jsonl"
    records = [(n, r) for n, _, r in iter_records(io.BytesIO(path.read_bytes()), path.name)]
    assert len(records) == 100  # one indented JSON array, despite the .jsonl name
    s = normalise(records[0][1], path.name, 1, "none")
    assert s.metrics == {"exact_match": 1.0} and s.target == ["A", "B", "C", "D"]
    kind, prompt, _, gen_kwargs = request_of(s)
    assert kind == "generate_until" and prompt.startswith("The following are multiple choice")
    as_jsonl = b"\n".join(json.dumps(r).encode() for _, r in records)
    assert [r for _, _, r in iter_records(io.BytesIO(as_jsonl), "x.jsonl")] == [r for _, r in records]


def test_structured_metric_values_are_kept(real_fixtures):
    path = next((real_fixtures / "v0.4.10dev_masakhaner/google__gemma-2b").glob("samples_*.jsonl"))
    _, raw, first = next(iter_records(path.open("rb"), path.name))
    assert raw == path.read_bytes().split(b"\n", 1)[0]  # kept byte for byte
    s = normalise(first, path.name, 1, "none")
    assert s.filter == "flexible-extract" and s.metrics["f1"][0] == "DATE: kawuononi"


def test_multiple_choice_requests(real_fixtures):
    path = next((real_fixtures / "v0.4.13dev_negotiationtom/Qwen__Qwen3-8B").glob("samples_*.jsonl"))
    _, _, first = next(iter_records(path.open("rb"), path.name))
    kind, prompt, continuations, _ = request_of(normalise(first, path.name, 1, "none"))
    assert kind == "loglikelihood" and len(continuations) == 4 and prompt.startswith("<|im_start|>user")


def test_nan_written_by_python_json_is_accepted():
    (_, raw, record), = iter_records(io.BytesIO(b'{"doc_id": 3, "f1": NaN}\n'), "s.jsonl")
    assert raw == b'{"doc_id": 3, "f1": NaN}' and record["f1"] != record["f1"]


def test_a_bad_line_is_named():
    data = b'{"doc_id": 0}\n{"doc_id": 1,\n'
    with pytest.raises(MalformedFile) as e:
        list(iter_records(io.BytesIO(data), "samples_t_x.jsonl"))
    assert e.value.line == 2 and "samples_t_x.jsonl:2" in str(e.value)
    with pytest.raises(MalformedFile, match="doc_id"):
        normalise({"doc": {}}, "f.jsonl", 7, "none")
    with pytest.raises(MalformedFile) as e:  # blank lines count, before the first record too
        list(iter_records(io.BytesIO(b'\n\n{"doc_id": 0}\n\n{"doc_id": 1,\n'), "s.jsonl"))
    assert e.value.line == 5


def test_pairing_across_the_hub_layout():
    ts = "2024-08-25T21-59-12.123082"
    files = [ListedFile(p) for p in [
        f"meta-llama/Llama-3-8B/results_{ts}.json",
        f"meta-llama__Llama-3-8B/results_{ts}.json",
        f"meta-llama__Llama-3-8B/samples_arc_easy_{ts}.jsonl",
        "meta-llama__Llama-3-8B/samples_arc_easy_2024-01-01T00-00-00.jsonl",
        "old/results.json", "old/pretrained__gpt2_wmdp_bio.jsonl", "old/pretrained__gpt2_bio.jsonl",
    ]]
    nested = pair_samples(f"meta-llama/Llama-3-8B/results_{ts}.json", ts, "meta-llama/Llama-3-8B",
                          ["arc_easy"], files)
    assert [f.path for f in nested["arc_easy"]] == [f"meta-llama__Llama-3-8B/samples_arc_easy_{ts}.jsonl"]
    legacy = pair_samples("old/results.json", None, "gpt2", ["wmdp_bio", "bio"], files)
    assert [f.path for f in legacy["wmdp_bio"]] == ["old/pretrained__gpt2_wmdp_bio.jsonl"]
    assert [f.path for f in legacy["bio"]] == ["old/pretrained__gpt2_bio.jsonl"]
    assert sanitize_model_name("a/b:c") == "a__b__c"


def test_doc_ids_seen_once_dense_or_not():
    from eval_pipeline.historical.ingest import _DocIds

    ids = _DocIds()
    assert [ids.add(i) for i in (0, 7, 8, 0, 1 << 30, 1 << 30, -1, 8, 100_000)] == [
        True, True, True, False, True, False, True, False, True]
    assert ids.count == 6 and len(ids._bits) < 32 * 1024
