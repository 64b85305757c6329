"""The lm-eval cases in ../shared/fixtures/lm-eval-cases: situations real lm-evaluation-harness users hit,
each with its right value. Every case's `in/` is imported into a fresh home and, where the case describes
a run, evaluated by the product's `generation` job (the tiny model on vLLM, vLLM's own OpenAI server, or
a canned OpenAI-protocol endpoint). Where a case has a reference, the pinned `lm_eval` CLI is run here
(offline, on the tiny model or against the canned endpoint) rather than trusting a stored number: its
numbers must be the right ones, and the product run on the CLI's own output must equal them."""
import json
import os
from pathlib import Path

import dagster as dg
import pytest
from canned_openai import CannedOpenAI
from helpers import QUIET_RUN_CONFIG
from lm_eval_cli import aggregates, generations, grade_rows, grades, lls_by_doc, outputs_by_doc, task_id
from lm_eval_cli import lm_eval as _lm_eval
from lm_eval_cli import task_folder as _task_folder
from sqlalchemy import select

from eval_pipeline import runs
from eval_pipeline.historical.importer import import_results
from eval_pipeline.models.registry import add_model
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.results.samples import list_samples
from eval_pipeline.service.launching import execute_in_process
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.suites.tasks import list_tasks
from eval_pipeline.suites.versions import suite_task_pins


@pytest.fixture
def home(tmp_path, monkeypatch):
    from eval_pipeline.stores.runtime import open_runtime
    from eval_pipeline.stores.settings import Settings

    for var in [v for v in os.environ if v.startswith(("EVAL_PIPELINE_", "DAGSTER_HOME"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("EVAL_PIPELINE_HOME", str(tmp_path / "home"))
    rt = open_runtime(Settings.from_env())
    yield rt
    rt.catalog.dispose()


# --- the product ------------------------------------------------------------------------------------

def import_ok(rt, folder: Path, suite: str = "cases"):
    result = import_results(rt.catalog, rt.lake, {"source": {"type": "path", "url": str(folder)},
                                                  "suite_name": suite})
    assert result.imported_runs >= 1 and not result.errors, result.errors
    return result


def add_tiny(rt, tiny_model, name="tiny", **extra):
    # The same name and options in every test: the loaded engine is reused across tests.
    add_model(rt.catalog, name, {"backend": "vllm", "path": str(tiny_model), "dtype": "float32",
                                 "max_model_len": 256, **extra})


def run_eval(rt, suite_id: str, models: list[str], tasks: list[str] | None = None, **body) -> dict:
    req = {"suite_id": suite_id, "models": models, **body}
    if tasks is not None:
        req["task_ids"] = [task_id(rt, name) for name in tasks]
    run = runs.create_run(rt.catalog, rt.lake, req)
    execute_in_process(dg.DagsterInstance.ephemeral(), rt.catalog, rt.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB), run_config=QUIET_RUN_CONFIG)
    return runs.get_run(rt.catalog, run["id"])


def per_doc(rt, run_id, model, task, metric, filt="none") -> list[float | None]:
    g = grades(rt, run_id, model, task)
    return [g[k] for k in sorted(k for k in g if k[1:] == (metric, filt))]


def historical(rt, task: str | None = None) -> list[t.HistoricalMetric]:
    with rt.catalog.session() as s:
        q = select(t.HistoricalMetric)
        if task is not None:
            q = q.where(t.HistoricalMetric.task_name == task)
        rows = s.scalars(q).all()
        s.expunge_all()
        return rows


def hist_metric(rt, task, metric, filt="none") -> t.HistoricalMetric:
    (row,) = [m for m in historical(rt, task) if (m.metric, m.filter) == (metric, filt)]
    return row


def _numbers(obj) -> list:
    if isinstance(obj, dict):
        return [n for v in obj.values() for n in _numbers(v)]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v)]
    return [obj] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


def assert_done(run, total=None):
    assert run["status"] == "completed", run["error"]
    assert run["request_counts"]["failed"] == 0, run["request_counts"]
    if total is not None:
        assert run["request_counts"]["total"] == total


def assert_like_cli(rt, run_id, model, task, cli, *, ll_abs=1e-6, agg_rel=None):
    """The product's per-request outputs, per-sample scores and aggregates on a task equal the lm_eval
    CLI's own (`cli`: its samples and results)."""
    samples = cli["samples"][task]
    gens = generations(rt, run_id, model, task)
    g = grades(rt, run_id, model, task)
    rows = grade_rows(rt, run_id, model, task)
    errors = {(r["doc_id"], r["metric"], r["filter"]): r["error"] for r in rows}
    stats = {(r["doc_id"], r["metric"], r["filter"]): r["stats"] for r in rows}
    ours_lls, ours_out = lls_by_doc(gens), outputs_by_doc(gens)
    for s in samples:
        resps = s["resps"]
        if isinstance(resps[0][0], list):  # loglikelihood: [[[ll, greedy]], ...]
            assert ours_lls[s["doc_id"]] == pytest.approx([float(r[0][0]) for r in resps], abs=ll_abs), s["doc_id"]
            greedy = [str(x["is_greedy"]) for x in gens if x["doc_id"] == s["doc_id"]]
            assert greedy == [str(r[0][1]) for r in resps], s["doc_id"]
        elif len(s["arguments"]["gen_args_0"]) == 1:  # loglikelihood_rolling: [[ll]]
            assert ours_lls[s["doc_id"]] == pytest.approx([float(resps[0][0])], abs=ll_abs), s["doc_id"]
        else:  # generate_until: [[text, ... one per repeat]]
            assert ours_out[s["doc_id"]] == resps[0], s["doc_id"]
        for metric in s["metrics"]:
            key = (s["doc_id"], metric, s["filter"])
            if isinstance(s[metric], list):  # an item of a weighted aggregation: (loglikelihood, words | bytes)
                assert stats.get(key) == pytest.approx([float(x) for x in s[metric]], abs=ll_abs), key
            elif s[metric] is not None:
                assert g.get(key) == pytest.approx(float(s[metric]), abs=1e-9), (key, errors.get(key))
    ours = aggregates(rt, run_id, model, task)
    expected = {k: v for k, v in cli["results"][task].items()
                if "," in k and "_stderr," not in k and isinstance(v, (int, float))}
    assert expected
    for key, value in expected.items():
        assert ours[key]["value"] == pytest.approx(value, abs=1e-9, rel=agg_rel), key
        stderr = cli["results"][task][key.replace(",", "_stderr,")]
        if isinstance(stderr, (int, float)):
            assert ours[key]["stderr"] == pytest.approx(stderr, abs=1e-9), key


# --- the lm_eval CLI --------------------------------------------------------------------------------
# The vllm-backend references (c01, c04, c05, c12, c16) come from the session's one `lm_eval --model vllm`
# run (lm_eval_cli.py, shared with test_fidelity.py): c05's ref task, c16's two tasks, and tasks written
# there from c01's, c04's and c12's docs.

@pytest.fixture
def vllm_cli(cases, lm_eval_vllm) -> dict:
    return lm_eval_vllm


@pytest.fixture
def rolling_cli(cases, lm_eval_vllm) -> dict:
    """c04's docs as a loglikelihood_rolling task with wikitext's metrics (process_results) and without."""
    return lm_eval_vllm


def _completions_cli(root: Path, tiny_model: Path, task_dirs: list[Path], fakes: list[Path], *extra) -> dict:
    """lm_eval's local-completions against the canned endpoint loaded with the cases' ref/fake.json."""
    names = _task_folder(root / "tasks", *task_dirs)
    with CannedOpenAI(*fakes) as server:
        out = _lm_eval(["--model", "local-completions", "--model_args",
                        f"model=fake,base_url={server.url}/completions,tokenized_requests=False,"
                        f"num_concurrent=1,max_retries=1,tokenizer={tiny_model}",
                        "--tasks", ",".join(sorted(names)), "--include_path", str(root / "tasks"), *extra],
                       root / "out")
    return {**out, "server": server}


@pytest.fixture(scope="session")
def completions_cli(cases, tiny_model, tmp_path_factory) -> dict:
    """c09's and c14's references in one CLI run (same model args; their prompts do not overlap)."""
    c09, c14 = cases / "c09_boolq_seq2seq_choice/ref", cases / "c14_repeats_self_consistency/ref"
    return _completions_cli(tmp_path_factory.mktemp("api-cli"), tiny_model, [c09 / "tasks", c14 / "tasks"],
                            [c09 / "fake.json", c14 / "fake.json"])


@pytest.fixture(scope="session")
def predict_only_cli(cases, tiny_model, tmp_path_factory) -> dict:
    ref = cases / "c10_predict_only/ref"
    return _completions_cli(tmp_path_factory.mktemp("po-cli"), tiny_model, [ref / "tasks"], [ref / "fake.json"],
                            "--predict_only")


def _canned_model(rt, name, server, api="completions"):
    add_model(rt.catalog, name, {"backend": "openai", "base_url": server.url, "api": api})


# --- the cases --------------------------------------------------------------------------------------

def test_c01_context_longer_than_max_model_len_is_left_truncated_and_scored(cases, home, tiny_model, vllm_cli):
    imported = import_ok(home, cases / "c01_ll_maxlen/in")
    add_tiny(home, tiny_model)
    run = run_eval(home, imported.suite_id, ["tiny"])
    assert_done(run, total=9)
    gens = generations(home, run["id"], "tiny", "longctx_mc")
    assert all(g["error"] is None and g["logprob"] is not None for g in gens)
    # lm-eval's vllm backend keeps the last max_model_len-1 tokens: the CLI's numbers are the right ones
    cli = vllm_cli["samples"]["case_c01_longctx"]
    assert lls_by_doc(gens) == {s["doc_id"]: pytest.approx([float(r[0][0]) for r in s["resps"]], abs=1e-6)
                                for s in cli}
    for metric in ("acc", "acc_norm"):
        assert per_doc(home, run["id"], "tiny", "longctx_mc", metric) == [s[metric] for s in cli]
        assert aggregates(home, run["id"], "tiny", "longctx_mc")[f"{metric},none"]["value"] == pytest.approx(
            vllm_cli["results"]["case_c01_longctx"][f"{metric},none"], abs=1e-12)


def test_c02_chat_templated_prompts_get_one_bos(cases, home, tiny_model):
    from transformers import AutoTokenizer

    imported = import_ok(home, cases / "c02_chat_template_bos/in")
    add_tiny(home, tiny_model)
    add_tiny(home, tiny_model, "tiny-bos", add_bos_token=True)
    run = run_eval(home, imported.suite_id, ["tiny", "tiny-bos"])
    assert_done(run, total=4)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for model in ("tiny", "tiny-bos"):
        gens = generations(home, run["id"], model, "gsm8k_chat")
        assert [len(tok(g["prompt"], add_special_tokens=False).input_ids) for g in gens] == [22, 23]
        assert [g["input_tokens"] for g in gens] == [22, 23], model


def test_c03_legacy_lambada_layout(cases, home, tiny_model):
    expected = json.loads((cases / "c03_lambada_legacy/expected.json").read_text())
    imported = import_ok(home, cases / "c03_lambada_legacy/in")
    assert imported.imported_samples == 4
    acc = hist_metric(home, "lambada_openai", "acc")
    assert acc.value == 0.5 and acc.recomputed == pytest.approx(0.5) and acc.recomputed_matches is True
    # perplexity aggregates as exp(-mean ll), not as a mean: not compared as one
    ppl = hist_metric(home, "lambada_openai", "perplexity")
    assert ppl.value == pytest.approx(94.1604272094068)
    assert ppl.recomputed_matches is not False, ppl.recomputed
    assert ppl.recomputed is None or ppl.recomputed == pytest.approx(94.1604272094068)

    add_tiny(home, tiny_model)
    run = run_eval(home, imported.suite_id, ["tiny"])
    assert_done(run, total=4)
    gens = generations(home, run["id"], "tiny", "lambada_openai")
    assert [g["logprob"] for g in gens] == pytest.approx(expected["lls"], abs=1e-4)
    assert [g["is_greedy"] for g in gens] == expected["greedy"]
    ours = aggregates(home, run["id"], "tiny", "lambada_openai")
    assert ours["perplexity,none"]["value"] == pytest.approx(expected["perplexity"], rel=1e-4)
    assert ours["acc,none"]["value"] == expected["acc"]


def test_c04_rolling_loglikelihood_is_scored_as_lm_eval_scores_it(cases, home, tiny_model, rolling_cli):
    """wikitext (lm-eval's registry: its own process_results) and a plain loglikelihood_rolling task (scored
    natively) give lm-eval's rolling loglikelihoods, word/byte perplexity and bits per byte, beside c03's
    lambada task in the same run."""
    lambada = import_ok(home, cases / "c03_lambada_legacy/in")
    import_ok(home, cases / "c04_wikitext_rolling/in")
    import_ok(home, rolling_cli["folder"])
    gradability = {t["name"]: t["gradability"] for t in list_tasks(home.catalog)}
    assert gradability["wikitext"]["status"] == "lm-eval-registry", gradability
    assert gradability["case_c04_native"]["status"] == "native"
    add_tiny(home, tiny_model)
    tasks = ["case_c04_native", "case_c04_rolling", "lambada_openai", "wikitext"]
    assert set(tasks) <= set(suite_task_pins(home.catalog, lambada.suite_id))
    run = run_eval(home, lambada.suite_id, ["tiny"], tasks)
    assert run["status"] == "completed", run["error"]
    ours = aggregates(home, run["id"], "tiny", "lambada_openai")
    assert ours["perplexity,none"]["value"] == pytest.approx(445.2153669757617, rel=1e-4)
    cli = rolling_cli["results"]
    lls = [float(s["resps"][0][0]) for s in rolling_cli["samples"]["case_c04_rolling"]]
    assert [g["logprob"] for g in generations(home, run["id"], "tiny", "wikitext")] == pytest.approx(lls, abs=1e-5)
    wiki = aggregates(home, run["id"], "tiny", "wikitext")
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert wiki[f"{metric},none"]["value"] == pytest.approx(cli["case_c04_rolling"][f"{metric},none"],
                                                              rel=1e-5), metric
        assert wiki[f"{metric},none"]["stderr"] is None  # lm-eval: "N/A"
    # a document's sum over ~150 float32 logprobs moves by ~1e-8 relative with vLLM's batch composition
    assert_like_cli(home, run["id"], "tiny", "case_c04_native", rolling_cli, ll_abs=1e-5, agg_rel=1e-7)
    # the CLI's own copy scores with a process_results of its task folder, which no registry holds: refused
    assert gradability["case_c04_rolling"]["status"] == "not-gradable"
    assert run["metrics"]["tiny"]["case_c04_rolling"].keys() == {"not_gradable"}


def test_c05_mc2_nan_import_and_mc2_accuracy(cases, home, tiny_model, vllm_cli):
    case = cases / "c05_mc2_nan"
    expected = json.loads((case / "expected.json").read_text())
    imported = import_ok(home, case / "in")
    acc = hist_metric(home, "truthfulqa_mc2", "acc")
    assert acc.value is None and acc.stderr is None  # NaN kept as missing
    assert imported.imported_samples == 3

    # the CLI itself on the tiny model: the right values
    cli = vllm_cli["samples"]["ref_mc2"]
    assert vllm_cli["results"]["ref_mc2"]["acc,none"] == pytest.approx(expected["acc"], abs=1e-6)
    for s, want in zip(cli, expected["per_doc"], strict=True):
        assert [float(r[0][0]) for r in s["resps"]] == pytest.approx(want["lls"], abs=1e-5)
        assert s["acc"] == pytest.approx(want["mc2_acc"], abs=1e-6)

    import_ok(home, vllm_cli["folder"])
    add_tiny(home, tiny_model)
    run = run_eval(home, imported.suite_id, ["tiny"], ["truthfulqa_mc2", "ref_mc2"])
    assert_done(run)
    gens = generations(home, run["id"], "tiny", "truthfulqa_mc2")
    assert lls_by_doc(gens) == {i: pytest.approx(d["lls"], abs=1e-5) for i, d in enumerate(expected["per_doc"])}
    assert per_doc(home, run["id"], "tiny", "truthfulqa_mc2", "acc") == pytest.approx(
        [d["mc2_acc"] for d in expected["per_doc"]], abs=1e-6)
    assert aggregates(home, run["id"], "tiny", "truthfulqa_mc2")["acc,none"]["value"] == pytest.approx(
        expected["acc"], abs=1e-6)
    # ref_mc2 scores with its own mc2_utils.py, which lm-eval's registry does not hold: it is refused,
    # everywhere, and no number is shown under `acc`
    gradability = {t["name"]: t["gradability"] for t in list_tasks(home.catalog)}
    assert gradability["truthfulqa_mc2"]["status"] == "lm-eval-registry"
    assert gradability["ref_mc2"]["status"] == "not-gradable" and "ref_mc2" in gradability["ref_mc2"]["reason"]
    assert run["metrics"]["tiny"]["ref_mc2"] == {"not_gradable": {"status": "not-gradable",
                                                                  "reason": gradability["ref_mc2"]["reason"]}}
    assert [e["task"] for e in run["task_errors"]] == ["ref_mc2"]
    assert lls_by_doc(generations(home, run["id"], "tiny", "ref_mc2")) == lls_by_doc(
        generations(home, run["id"], "tiny", "truthfulqa_mc2"))  # generated all the same
    samples, _ = list_samples(home.catalog, home.lake, run["id"], task_id=task_id(home, "ref_mc2"))
    assert samples and all(x["status"] == "completed" and x["scores"] == {} and x["error"]["type"] == "not-gradable"
                           for x in samples)


def test_c06_chat_content_none_is_an_empty_answer(cases, home):
    case = cases / "c06_reasoning_content_none"
    imported = import_ok(home, case / "in")
    with CannedOpenAI(case / "fake.json") as server:
        _canned_model(home, "canned", server, api="chat")
        run = run_eval(home, imported.suite_id, ["canned"])
    assert run["status"] == "completed", run["error"]
    gens = generations(home, run["id"], "canned", "gsm8k")
    none_doc = gens[1]
    assert none_doc["output_text"] == "" and none_doc["error"] is None, none_doc
    assert server.requests_matching("A box holds 4 pens") == 1  # not retried
    assert per_doc(home, run["id"], "canned", "gsm8k", "exact_match", "strict-match") == [1.0, 0.0, 1.0, 0.0]
    assert aggregates(home, run["id"], "canned", "gsm8k")["exact_match,strict-match"]["value"] == 0.5


def test_c07_more_stops_than_the_endpoint_accepts(cases, home):
    case = cases / "c07_many_stops"
    expected = json.loads((case / "expected.json").read_text())
    imported = import_ok(home, case / "in")
    with CannedOpenAI(case / "fake.json") as server:
        _canned_model(home, "canned", server)
        run = run_eval(home, imported.suite_id, ["canned"])
    assert_done(run, total=5)
    stops = [b.get("stop") for b in server.bodies]
    assert len(stops) == 5 and all(len([s] if isinstance(s, str) else s or []) <= 4 for s in stops), stops
    gens = generations(home, run["id"], "canned", "triviaqa_like")
    assert [g["output_text"] for g in gens] == expected["outputs"]
    assert aggregates(home, run["id"], "canned", "triviaqa_like")["exact_match,remove_whitespace"]["value"] \
        == expected["exact_match"]


def test_c08_nq_open_exact_match_options(cases, home):
    case = cases / "c08_nq_open_em"
    expected = json.loads((case / "expected.json").read_text())
    imported = import_ok(home, case / "in")
    with CannedOpenAI(case / "fake.json") as server:
        _canned_model(home, "canned", server)
        run = run_eval(home, imported.suite_id, ["canned"])
    assert_done(run, total=7)
    assert per_doc(home, run["id"], "canned", "nq_open", "exact_match", "remove_whitespace") == expected["per_doc"]
    assert aggregates(home, run["id"], "canned", "nq_open")["exact_match,remove_whitespace"]["value"] \
        == pytest.approx(expected["mean"], abs=1e-12)


def test_c09_generate_until_with_choices_compares_with_the_chosen_text(cases, home, completions_cli):
    case = cases / "c09_boolq_seq2seq_choice"
    expected = json.loads((case / "expected.json").read_text())
    cli = completions_cli["samples"]["ref_boolq_seq2seq"]
    assert [s["exact_match"] for s in cli] == expected["per_doc"]
    assert completions_cli["results"]["ref_boolq_seq2seq"]["exact_match,none"] == expected["mean"]

    imported = import_ok(home, case / "in")
    import_ok(home, completions_cli["folder"])
    with CannedOpenAI(case / "fake.json", case / "ref/fake.json") as server:
        _canned_model(home, "canned", server)
        run = run_eval(home, imported.suite_id, ["canned"], ["boolq-seq2seq", "ref_boolq_seq2seq"])
    assert_done(run, total=8)
    assert per_doc(home, run["id"], "canned", "boolq-seq2seq", "exact_match") == expected["per_doc"]
    assert aggregates(home, run["id"], "canned", "boolq-seq2seq")["exact_match,none"]["value"] == expected["mean"]
    assert_like_cli(home, run["id"], "canned", "ref_boolq_seq2seq", completions_cli)


def test_c10_predict_only_output_has_no_score(cases, home, predict_only_cli):
    case = cases / "c10_predict_only"
    # the CLI's --predict_only output: 999 is lm-eval's placeholder, and no sample has a score
    assert predict_only_cli["results"]["ref_po"]["bypass,none"] == 999
    assert all(s["bypass"] is None for s in predict_only_cli["samples"]["ref_po"])

    imported = import_ok(home, case / "in")
    import_ok(home, predict_only_cli["folder"])
    assert not [(m.task_name, m.metric) for m in historical(home) if m.value == 999]
    with CannedOpenAI(case / "fake.json", case / "ref/fake.json") as server:
        _canned_model(home, "canned", server)
        run = run_eval(home, imported.suite_id, ["canned"], ["gsm8k", "ref_po"])
    assert_done(run, total=6)
    assert [g["output_text"] for g in generations(home, run["id"], "canned", "gsm8k")] == \
        [" #### 5", " #### 7", " #### 42"]
    assert [g["output_text"] for g in generations(home, run["id"], "canned", "ref_po")] == \
        [s["resps"][0][0] for s in predict_only_cli["samples"]["ref_po"]]
    for task in ("gsm8k", "ref_po"):
        assert not [m for m in aggregates(home, run["id"], "canned", task).values() if m["value"] is not None], task
    assert 999 not in _numbers(run["metrics"])


def test_c11_groups_are_not_tasks_and_each_filter_is_graded(cases, home):
    case = cases / "c11_groups_multifilter"
    expected = json.loads((case / "expected.json").read_text())
    imported = import_ok(home, case / "in")
    assert set(suite_task_pins(home.catalog, imported.suite_id)) == set(expected)
    with home.catalog.session() as s:
        assert set(s.scalars(select(t.Task.name))) == set(expected)
    for m in historical(home):
        assert (m.task_name in expected) != m.is_group, (m.task_name, m.metric, m.filter)
    leaves = [m for m in historical(home) if not m.is_group]
    assert {(m.task_name, m.filter): m.value for m in leaves} == {
        (task, filt): value for task, by_filter in expected.items() for filt, value in by_filter.items()}
    assert all(m.metric == "exact_match" and m.recomputed_matches is True for m in leaves)

    with CannedOpenAI(case / "fake.json") as server:
        _canned_model(home, "canned", server)
        run = run_eval(home, imported.suite_id, ["canned"])
    assert_done(run, total=4)
    for task, by_filter in expected.items():
        ours = aggregates(home, run["id"], "canned", task)
        assert {f: ours[f"exact_match,{f}"]["value"] for f in by_filter} == by_filter, task


def test_c12_empty_context_scores_the_continuation_after_bos(cases, home, tiny_model, vllm_cli):
    case = cases / "c12_blimp_empty_context"
    expected = json.loads((case / "expected.json").read_text())
    want = [e["lm_eval_ll"] for e in expected]
    cli = vllm_cli["samples"]["case_c12_blimp"]
    assert [float(r[0][0]) for s in cli for r in s["resps"]] == pytest.approx(want, abs=1e-5)

    imported = import_ok(home, case / "in")
    import_ok(home, vllm_cli["folder"])
    add_tiny(home, tiny_model)
    task = "blimp_anaphor_gender_agreement"
    run = run_eval(home, imported.suite_id, ["tiny"], [task, "case_c12_blimp"])
    assert_done(run, total=12)
    assert [g["logprob"] for g in generations(home, run["id"], "tiny", task)] == pytest.approx(want, abs=1e-5)
    assert per_doc(home, run["id"], "tiny", task, "acc") == [1.0, 1.0, 1.0]
    assert aggregates(home, run["id"], "tiny", task)["acc,none"]["value"] == 1.0
    assert_like_cli(home, run["id"], "tiny", "case_c12_blimp", vllm_cli)


C14_DOCS = ("Tom has 3 apples and buys 2 more", "Sam has 10 pens and gives away 3")


def test_c14_repeats_and_majority_vote(cases, home, completions_cli):
    case = cases / "c14_repeats_self_consistency"
    expected = json.loads((case / "expected.json").read_text())
    n = expected["requests_per_doc"]
    # the CLI against the same endpoint: 64 requests per doc and the right values
    assert [completions_cli["server"].requests_matching(d) for d in C14_DOCS] == [n, n]
    assert {f: completions_cli["results"]["ref_sc"][f"exact_match,{f}"] for f in expected["per_filter"]} \
        == expected["per_filter"]

    imported = import_ok(home, case / "in")
    import_ok(home, completions_cli["folder"])
    # one endpoint per run: its nth answer to a doc depends on how many requests came before
    for task, fake, model in (("gsm8k_cot_self_consistency", case / "fake.json", "canned"),
                              ("ref_sc", case / "ref/fake.json", "canned-ref")):
        with CannedOpenAI(fake) as server:
            _canned_model(home, model, server)
            run = run_eval(home, imported.suite_id, [model], [task], generation_concurrency=1)
        assert run["status"] == "completed", run["error"]
        assert [server.requests_matching(d) for d in C14_DOCS] == [n, n], task
        assert len(server.bodies) == 2 * n
        ours = aggregates(home, run["id"], model, task)
        assert {f: ours[f"exact_match,{f}"]["value"] for f in expected["per_filter"]} == expected["per_filter"]
        if task == "ref_sc":
            assert_like_cli(home, run["id"], model, task, completions_cli)


def test_c16_openai_loglikelihood_against_vllms_server(cases, home, vllm_cli, vllm_server):
    case = cases / "c16_openai_loglikelihood"
    stored = {task: [json.loads(line) for line in next((case / "in").rglob(f"samples_{task}_*.jsonl")).open()]
              for task in ("ref_blimp", "ref_trailing")}
    # the CLI here gives what the stored output and CASE.md say
    for task, samples in stored.items():
        assert [[float(r[0][0]) for r in s["resps"]] for s in vllm_cli["samples"][task]] == [
            pytest.approx([float(r[0][0]) for r in s["resps"]], abs=1e-5) for s in samples], task
    trailing = {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in vllm_cli["samples"]["ref_trailing"]}
    assert trailing[0] == pytest.approx([-18.231949, -35.974463, -23.878850], abs=1e-5)
    assert trailing[2] == pytest.approx([-6.208557, -29.899933, -30.449520], abs=1e-5)
    assert vllm_cli["results"]["ref_trailing"]["acc,none"] == pytest.approx(1 / 3)
    assert vllm_cli["results"]["ref_trailing"]["acc_norm,none"] == pytest.approx(2 / 3)

    imported = import_ok(home, case / "in")
    import_ok(home, vllm_cli["folder"])
    add_model(home.catalog, "served", {"backend": "openai", "base_url": vllm_server, "api": "completions",
                                       "served_name": "tiny-served"})
    run = run_eval(home, imported.suite_id, ["served"], ["ref_blimp", "ref_trailing"], generation_concurrency=4)
    assert_done(run, total=15)
    gens = generations(home, run["id"], "served", "ref_trailing")
    assert lls_by_doc(gens)[0] == pytest.approx([-18.231949, -35.974463, -23.878850], abs=1e-5)
    assert lls_by_doc(gens)[2] == pytest.approx([-6.208557, -29.899933, -30.449520], abs=1e-5)
    for task in ("ref_blimp", "ref_trailing"):
        assert_like_cli(home, run["id"], "served", task, vllm_cli, ll_abs=1e-5)
