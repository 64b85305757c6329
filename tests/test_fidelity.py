"""Fidelity against the reference harness, lm-evaluation-harness 0.4.13, on one local task per kind of
situation (lm_eval_cli.FIDELITY_TASKS: contexts longer than the window, an empty context, a context
ending in whitespace, every output_type, generate_until with doc_to_choice and with list targets,
repeats with majority_vote and take_first_k, a regex filter with exact_match options).

Two passes of the pinned `lm_eval` CLI, each run once per test session (lm_eval_cli.py):
- its `vllm` backend on the tiny model (float32, max_model_len 256), re-evaluated here by the product's
  vllm backend on the same model;
- its `local-completions` model against vLLM's own OpenAI server on the tiny model (token ids, no BOS,
  max_length 256), re-evaluated here by the product's openai backend against the same server
  (`add_bos_token: false`, `tokenizer` the tiny model, as lm-eval's tokenized requests).
Each CLI output folder is imported into a fresh home and evaluated by the product; generated texts must
be equal, loglikelihoods within 1e-6, greedy flags and per-sample scores equal, aggregates and stderrs
within 1e-9, with two measured exceptions (constants below): the vllm pass's loglikelihood sums and the
aggregates computed from them (vLLM compiled vs eager), and bootstrapped stderrs (two random streams).
Against vLLM's server every number is bit-identical.

Tasks by kind: fid_long_mc, fid_long_gen, fid_rolling (longer than the window); fid_blimp (empty
context), fid_trailing (context ending in a space, target_delimiter ""); fid_lambada (loglikelihood),
fid_mc (multiple_choice), fid_gen_choice (doc_to_choice), fid_gen_list (list target), fid_rolling
(loglikelihood_rolling, no process_results); fid_repeats (repeats, majority_vote, take_first_k); fid_gen
(regex filter, exact_match options)."""
import math
import os
from dataclasses import dataclass

import dagster as dg
import pytest
from helpers import QUIET_RUN_CONFIG
from lm_eval_cli import FIDELITY_TASKS, MAX_MODEL_LEN, SERVED_NAME, aggregates, generations, grade_rows, task_id

FIDELITY = sorted(FIDELITY_TASKS)
# lm-eval bootstraps the stderr of these aggregations (its own RNG, in a process pool); the product
# bootstraps with numpy's: two estimates from 100,000 resamples each agree to their Monte Carlo error.
BOOTSTRAPPED = {"perplexity"}
BOOTSTRAP_REL = 0.02
# Aggregates computed from loglikelihoods (they move with them; the 0/1 metrics do not).
FROM_LOGLIKELIHOODS = {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"}
# lm-eval's vllm backend runs vLLM's default (compiled) model; the product's engine runs eager on the
# CPU build (vllm_engine.py). The CLI with enforce_eager=True gives the product's numbers exactly; with
# the default its float32 per-token logprobs differ in the last bits: sums over tens to thousands of
# tokens differ by up to ~2e-8 relative (1.9e-6 on a -114 BLiMP sentence, 1.9e-5 on a -10116 document).
# Which last bits differ depends on the CPU's vector kernels: on another machine of this kind a -12.4
# loglikelihood of fid_trailing differed by 1.43e-6 (1.15e-7 relative, 1.5 ulps of a float32 of that
# size). The bound is two float32 ulps of the value, 2 * 2**-23 relative.
VLLM_PASS = {"ll_rel": 2 * 2 ** -23, "agg_rel": 2 * 2 ** -23}


@dataclass
class Pass:
    """The product's run on one CLI pass's imported output."""

    rt: object
    run: dict
    model: str
    cli: dict


def _product_pass(root, cli: dict, model: str, options: dict, **run_body) -> Pass:
    from eval_pipeline import runs
    from eval_pipeline.historical.importer import import_results
    from eval_pipeline.models.registry import add_model
    from eval_pipeline.orchestration.definitions import defs
    from eval_pipeline.orchestration.job_names import GENERATION_JOB
    from eval_pipeline.service.launching import execute_in_process
    from eval_pipeline.stores.runtime import open_runtime
    from eval_pipeline.stores.settings import Settings

    with pytest.MonkeyPatch.context() as mp:
        for var in [v for v in os.environ if v.startswith(("EVAL_PIPELINE_", "DAGSTER_HOME"))]:
            mp.delenv(var)
        mp.setenv("EVAL_PIPELINE_HOME", str(root / "home"))
        rt = open_runtime(Settings.from_env())
        imported = import_results(rt.catalog, rt.lake, {"source": {"type": "path", "url": str(cli["folder"])},
                                                        "suite_name": "fidelity"})
        assert imported.imported_runs == 1 and not imported.errors, imported.errors
        add_model(rt.catalog, model, options)
        run = runs.create_run(rt.catalog, rt.lake, {"suite_id": imported.suite_id, "models": [model],
                                                    "task_ids": [task_id(rt, t) for t in FIDELITY], **run_body})
        execute_in_process(dg.DagsterInstance.ephemeral(), rt.catalog, rt.lake, run["id"],
                           defs.resolve_job_def(GENERATION_JOB), run_config=QUIET_RUN_CONFIG)
        run = runs.get_run(rt.catalog, run["id"])
    assert run["status"] == "completed", run["error"]
    return Pass(rt, run, model, cli)


@pytest.fixture(scope="module")
def vllm_pass(lm_eval_vllm, tiny_model, tmp_path_factory):
    # The same name and options as the other files' `tiny`: the loaded engine is reused.
    p = _product_pass(tmp_path_factory.mktemp("fidelity-vllm"), lm_eval_vllm, "tiny",
                      {"backend": "vllm", "path": str(tiny_model), "dtype": "float32",
                       "max_model_len": MAX_MODEL_LEN})
    yield p
    p.rt.catalog.dispose()


@pytest.fixture(scope="module")
def completions_pass(lm_eval_completions, vllm_server, tiny_model, tmp_path_factory):
    # lm-eval's local-completions adds no BOS and sends token ids; one request at a time, as the CLI's
    # num_concurrent=1 (the server then computes each request alone, as it did for the CLI).
    p = _product_pass(tmp_path_factory.mktemp("fidelity-openai"), lm_eval_completions, "served",
                      {"backend": "openai", "base_url": vllm_server, "api": "completions",
                       "served_name": SERVED_NAME, "add_bos_token": False, "tokenizer": str(tiny_model)},
                      generation_concurrency=1)
    yield p
    p.rt.catalog.dispose()


# --- the comparison ------------------------------------------------------------------------------------

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare_with_cli(p: Pass, task: str, *, ll_abs=1e-6, ll_rel=0.0, agg_abs=1e-9, agg_rel=0.0,
                     stderr_abs=1e-9) -> dict:
    """Every difference between the product's outputs on `task` and the CLI's, as readable lines, and the
    largest loglikelihood and aggregate differences seen. Per request: generated texts exactly (every
    repeat), loglikelihoods within ll_abs and greedy flags; per sample (lm-eval logs one per filter): each
    metric's score exactly (a loglikelihood-valued one as a loglikelihood; weighted items as (ll, weight));
    per metric and filter: value within agg_abs (agg_rel for those computed from loglikelihoods), stderr
    within stderr_abs ("N/A" is none; a bootstrapped one within BOOTSTRAP_REL), n, and no metric lm-eval
    does not report. A loglikelihood may differ by max(ll_abs, ll_rel * |ll|)."""

    def ll_ok(got, want) -> bool:
        return got is not None and abs(got - want) <= max(ll_abs, ll_rel * abs(want))

    samples = p.cli["samples"][task]
    results = p.cli["results"][task]
    gens = generations(p.rt, p.run["id"], p.model, task)
    rows = {(r["doc_id"], r["metric"], r["filter"]): r for r in grade_rows(p.rt, p.run["id"], p.model, task)}
    by_doc: dict[int, list[dict]] = {}
    for g in gens:
        by_doc.setdefault(g["doc_id"], []).append(g)
    problems: list[str] = []
    seen = {"texts": 0, "lls": 0, "scores": 0, "aggregates": 0, "max_ll_diff": 0.0, "max_ll_rel": 0.0,
            "max_agg_diff": 0.0, "max_agg_rel": 0.0}
    docs = sorted({s["doc_id"] for s in samples})
    if sorted(by_doc) != docs:
        problems.append(f"docs: product {sorted(by_doc)} != CLI {docs}")
    for g in gens:
        if g["error"]:
            problems.append(f"doc {g['doc_id']} request {g['request_index']}: failed row: {g['error']}")
    compared_docs = set()
    for s in samples:
        doc, resps = s["doc_id"], s["resps"]
        ours = by_doc.get(doc, [])
        if doc not in compared_docs:
            compared_docs.add(doc)
            if resps and isinstance(resps[0][0], list):  # loglikelihood requests: [[[ll, greedy]], ...]
                want = [(float(r[0][0]), str(r[0][1])) for r in resps]
                got = [(o["logprob"], str(o["is_greedy"])) for o in ours]
                if len(got) != len(want):
                    problems.append(f"doc {doc}: {len(got)} loglikelihood requests, CLI {len(want)}")
                for i, ((wl, wg), (gl, gg)) in enumerate(zip(want, got)):
                    diff = abs(wl - gl) if gl is not None else math.inf
                    seen["max_ll_diff"] = max(seen["max_ll_diff"], diff)
                    seen["max_ll_rel"] = max(seen["max_ll_rel"], diff / abs(wl) if wl else diff)
                    if not ll_ok(gl, wl):
                        problems.append(f"doc {doc} request {i}: loglikelihood {gl!r} != CLI {wl!r} (diff {diff:.3g})")
                    if gg != wg:
                        problems.append(f"doc {doc} request {i}: is_greedy {gg} != CLI {wg}")
                    seen["lls"] += 1
            elif len(s["arguments"]["gen_args_0"]) == 1:  # loglikelihood_rolling: [[ll]]
                want, got = float(resps[0][0]), [o["logprob"] for o in ours]
                diff = abs(want - got[0]) if len(got) == 1 and got[0] is not None else math.inf
                seen["max_ll_diff"] = max(seen["max_ll_diff"], diff)
                seen["max_ll_rel"] = max(seen["max_ll_rel"], diff / abs(want) if want else diff)
                if len(got) != 1 or not ll_ok(got[0], want):
                    problems.append(f"doc {doc}: rolling loglikelihood {got} != CLI {want!r} (diff {diff:.3g})")
                seen["lls"] += 1
            else:  # generate_until: [[text, ... one per repeat]]
                got = [o["output_text"] for o in ours]
                if got != resps[0]:
                    problems.append(f"doc {doc}: generated {got!r} != CLI {resps[0]!r}")
                seen["texts"] += len(resps[0])
        for metric in s["metrics"]:
            key = (doc, metric, s["filter"])
            want, row = s[metric], rows.get(key)
            if row is None:
                problems.append(f"{key}: no grade (CLI {want!r})")
                continue
            if isinstance(want, list):  # an item of a weighted aggregation: (loglikelihood, words | bytes)
                stats = row["stats"] or []
                ok = len(stats) == 2 and ll_ok(stats[0], float(want[0])) and stats[1] == float(want[1])
                if not ok:
                    problems.append(f"{key}: item {stats} != CLI {want}")
            elif want is not None:
                if row["score"] is None:
                    problems.append(f"{key}: no score ({row['error']}), CLI {want!r}")
                elif metric == "perplexity":  # lm-eval's per-sample perplexity is the loglikelihood
                    if not ll_ok(row["score"], float(want)):
                        problems.append(f"{key}: {row['score']!r} != CLI {want!r}")
                elif row["score"] != float(want):
                    problems.append(f"{key}: score {row['score']!r} != CLI {want!r}")
            seen["scores"] += 1
    ours = aggregates(p.rt, p.run["id"], p.model, task)
    expected = {k: v for k, v in results.items() if "," in k and "_stderr," not in k and _is_number(v)}
    if not expected:
        problems.append(f"the CLI reports no aggregate for {task}: {results}")
    for key in sorted(set(ours) - set(expected)):
        problems.append(f"{key}: the product reports {ours[key]['value']!r}, lm-eval no such metric")
    for key, value in expected.items():
        if key not in ours:
            problems.append(f"{key}: missing from the product's metrics (CLI {value!r})")
            continue
        got = ours[key]
        metric = key.split(",")[0]
        diff = abs(got["value"] - value) if got["value"] is not None else math.inf
        seen["max_agg_diff"] = max(seen["max_agg_diff"], diff)
        seen["max_agg_rel"] = max(seen["max_agg_rel"], diff / abs(value) if value else diff)
        if diff > max(agg_abs, agg_rel * abs(value) if metric in FROM_LOGLIKELIHOODS else 0.0):
            problems.append(f"{key}: value {got['value']!r} != CLI {value!r} (diff {diff:.3g})")
        if got["n"] != len(docs):
            problems.append(f"{key}: n {got['n']} != {len(docs)} docs")
        stderr = results.get(key.replace(",", "_stderr,"))
        if _is_number(stderr):
            tol = max(stderr_abs, BOOTSTRAP_REL * abs(stderr)) if metric in BOOTSTRAPPED else stderr_abs
            if got["stderr"] is None or abs(got["stderr"] - stderr) > tol:
                problems.append(f"{key}: stderr {got['stderr']!r} != CLI {stderr!r}")
        elif got["stderr"] is not None:
            problems.append(f"{key}: stderr {got['stderr']!r}, CLI {stderr!r}")
        seen["aggregates"] += 1
    seen["problems"] = problems
    return seen


def _assert_equal(p: Pass, task: str, **tolerances):
    seen = compare_with_cli(p, task, **tolerances)
    problems = seen.pop("problems")
    print(task, seen)
    assert not problems, f"{task}: {len(problems)} differences from the CLI ({seen}):\n" + "\n".join(problems[:40])
    assert seen["aggregates"] and seen["scores"] and (seen["texts"] or seen["lls"]), seen


# --- the tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", FIDELITY)
def test_vllm_backend_equals_the_cli(vllm_pass, task):
    _assert_equal(vllm_pass, task, **VLLM_PASS)


@pytest.mark.parametrize("task", FIDELITY)
def test_openai_backend_equals_local_completions(completions_pass, task):
    _assert_equal(completions_pass, task)


def test_outputs_scores_and_aggregates_equal_the_harness(vllm_pass):
    """The original fidelity test: a generate_until task with a regex filter and exact_match options,
    and a multiple-choice task."""
    rt, run, harness = vllm_pass.rt, vllm_pass.run, vllm_pass.cli
    compared = {"texts": 0, "lls": 0, "scores": 0, "aggregates": 0}
    for task in ("fid_gen", "fid_mc"):
        samples = harness["samples"][task]
        gens = generations(rt, run["id"], "tiny", task)
        grades = {(g["doc_id"], g["metric"], g["filter"]): g["score"]
                  for g in rt.lake.read_table(f"grades/{run['id']}/tiny/{task}/rules.parquet").to_pylist()}
        for s in samples:
            ours = [g for g in gens if g["doc_id"] == s["doc_id"]]
            if task == "fid_gen":
                assert ours[0]["output_text"] == s["resps"][0][0], s["doc_id"]
                compared["texts"] += 1
            else:
                for g, (ll, greedy) in zip(ours, (r[0] for r in s["resps"]), strict=True):
                    assert g["logprob"] == pytest.approx(float(ll), abs=1e-6) and str(g["is_greedy"]) == str(greedy)
                    compared["lls"] += 1
            for metric in s["metrics"]:
                assert grades[(s["doc_id"], metric, s["filter"])] == float(s[metric]), (task, s["doc_id"], metric)
                compared["scores"] += 1
        metrics = rt.lake.read_table(f"metrics/{run['id']}/tiny/{task}/metrics.parquet").to_pylist()
        for m in metrics:
            key = f"{m['metric']},{m['filter']}"
            assert m["value"] == pytest.approx(harness["results"][task][key], abs=1e-12), key
            assert m["stderr"] == pytest.approx(harness["results"][task][f"{m['metric']}_stderr,{m['filter']}"],
                                                abs=1e-9), key
            compared["aggregates"] += 1
    gen_em = {m["filter"]: m["value"] for m in rt.lake.read_table(
        f"metrics/{run['id']}/tiny/fid_gen/metrics.parquet").to_pylist()}
    assert 0 < gen_em["first-word"] < 1  # half the targets are the model's own answers
    # the harness logs a generate_until doc once per filter: 14 docs x 2 filters
    assert compared == {"texts": 28, "lls": 36, "scores": 28 + 12 * 2, "aggregates": 4}


@pytest.mark.parametrize("pass_name", ["vllm", "completions"])
def test_the_tasks_exercise_what_they_are_for(pass_name, request, tiny_model):
    """The data keeps each task meaningful, in the CLI's own output: every 0/1 metric is neither always
    0 nor always 1; long contexts and documents exceed the window; repeats are planned and answered."""
    from transformers import AutoTokenizer

    p = request.getfixturevalue(f"{pass_name}_pass")
    samples, results = p.cli["samples"], p.cli["results"]
    for task in FIDELITY:
        for key, value in results[task].items():
            metric = key.split(",")[0]
            if key == "exact_match,none" and task == "fid_gen":
                continue  # the whole answer is never one word: the first-word filter is the measure
            if "," in key and "_stderr" not in key and metric in ("acc", "acc_norm", "exact_match"):
                assert 0 < value < 1, (task, key, value)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for task in ("fid_long_mc", "fid_long_gen"):
        lengths = [len(tok(s["arguments"]["gen_args_0"]["arg_0"]).input_ids) for s in samples[task]]
        assert min(lengths) > MAX_MODEL_LEN, (task, lengths)
    pages = [len(tok(s["doc"]["page"], add_special_tokens=False).input_ids) for s in samples["fid_rolling"]]
    assert min(pages) < MAX_MODEL_LEN - 2 and max(pages) > 3 * (MAX_MODEL_LEN - 2), pages
    assert all(len(s["resps"][0]) == 3 for s in samples["fid_repeats"])
    gens = generations(p.rt, p.run["id"], p.model, "fid_repeats")
    assert len(gens) == 3 * len({s["doc_id"] for s in samples["fid_repeats"]})
    # planned and counted as lm-eval sends them: one request per choice, per rolling document, per repeat
    first = {(t, s["doc_id"]): s for t in FIDELITY for s in samples[t]}
    planned = sum(len(s["resps"][0]) if isinstance(s["resps"][0][0], str) else len(s["resps"])
                  for s in first.values())
    assert p.run["request_counts"]["total"] == planned
    assert p.run["request_counts"]["failed"] == 0


@pytest.mark.parametrize("pass_name, room", [("vllm", MAX_MODEL_LEN), ("completions", MAX_MODEL_LEN - 1)])
def test_long_prompts_are_cut_where_lm_eval_cuts_them(pass_name, room, request, tiny_model):
    """A generate_until prompt longer than the window keeps its last `room - max_gen_toks` tokens:
    lm-eval's vllm backend keeps max_model_len - max_gen_toks (maybe_truncate); local-completions keeps
    max_length - 1 - max_gen_toks (TemplateAPI.max_length is max_length - 1)."""
    p = request.getfixturevalue(f"{pass_name}_pass")
    max_gen_toks = 8  # fid_long_gen's
    gens = generations(p.rt, p.run["id"], p.model, "fid_long_gen")
    assert [g["input_tokens"] for g in gens] == [room - max_gen_toks] * len(gens)
