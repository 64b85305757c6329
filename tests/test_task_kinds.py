"""Task kinds beyond the shared cases: gradability decided at import and obeyed by the run (a task lm-eval
scores with Python this product cannot run is refused everywhere, while the run's other tasks grade and
complete), one metric's failure leaving a doc's other scores, checks that never raise, what ran recorded
with each partition, and the openai backend's token-id prompts."""
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from openai_server import FlakyOpenAI

from eval_pipeline import runs
from eval_pipeline.generation.backends import backend_for
from eval_pipeline.generation.requests import GenRequest
from eval_pipeline.generation.tokens import Tokenization, Unservable
from eval_pipeline.historical.importer import import_results
from eval_pipeline.models.registry import Model, OpenAIOptions, add_model
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.quality.checks import check_grades, check_metrics
from eval_pipeline.results.report import markdown
from eval_pipeline.results.samples import list_samples
from eval_pipeline.service.launching import execute_in_process
from eval_pipeline.suites.tasks import list_tasks
from eval_pipeline.suites.versions import get_suite_version

WORDS = ["red", "blue", "green"]


def _gen_task(name: str, config: dict) -> tuple[dict, list[dict]]:
    """A generate_until task's results entry and samples (3 docs) as lm-eval 0.4.x writes them."""
    kwargs = {"until": ["\n"], "max_gen_toks": 4, "do_sample": False}
    samples = []
    for i, word in enumerate(WORDS):
        prompt = f"Q: say {word} {i}\nA:"
        samples.append({"doc_id": i, "doc": {"q": word}, "target": word,
                        "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": kwargs}},
                        "resps": [[word]], "filtered_resps": [word], "filter": "none",
                        "metrics": ["exact_match"], "doc_hash": "d", "prompt_hash": "p", "target_hash": "t",
                        "exact_match": 1.0})
    return {"task": name, "output_type": "generate_until", "generation_kwargs": kwargs, **config}, samples


def _results_folder(root: Path, tasks: dict[str, dict]) -> Path:
    folder = root / "org__kinds"
    folder.mkdir(parents=True)
    ts = "2026-01-02T03-04-05.000001"
    configs, results = {}, {}
    for name, config in tasks.items():
        configs[name], samples = _gen_task(name, config)
        results[name] = {"alias": name, "exact_match,none": 1.0, "exact_match_stderr,none": 0.0}
        (folder / f"samples_{name}_{ts}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (folder / f"results_{ts}.json").write_text(json.dumps({
        "results": results, "configs": configs, "versions": {n: 1.0 for n in tasks},
        "config": {"model": "vllm", "model_args": "pretrained=org/kinds,dtype=bfloat16"},
        "model_name": "org/kinds", "lm_eval_version": "0.4.13"}))
    return root


@pytest.fixture
def kinds_home(eval_home, tmp_path):
    folder = _results_folder(tmp_path / "kinds", {
        "kinds_plain": {"metric_list": [{"metric": "exact_match"}]},
        # Python scoring in a task of the user's own folder: lm-eval's registry does not hold it
        "kinds_custom": {"metric_list": [{"metric": "exact_match"}],
                         "process_results": "def process_results(doc, results):\n    return {'exact_match': 1}\n"},
        # numeric_match cannot grade a word target: every doc errs on it, exact_match must stand
        "kinds_two_metrics": {"metric_list": [{"metric": "exact_match"}, {"metric": "numeric_match"}]},
    })
    imported = import_results(eval_home.catalog, eval_home.lake, {"source": {"type": "path", "url": str(folder)},
                                                                  "suite_name": "kinds"})
    assert imported.imported_runs == 1 and not imported.errors, imported.errors
    eval_home.kinds_suite = imported.suite_id
    return eval_home


def test_a_task_no_rule_grades_is_refused_everywhere_and_the_run_completes(kinds_home, quiet_run_config):
    home = kinds_home
    # decided at import, before any run
    gradability = {t["name"]: t["gradability"] for t in list_tasks(home.catalog) if t["name"].startswith("kinds")}
    assert gradability["kinds_plain"] == {"status": "native", "reason": None}
    assert gradability["kinds_custom"]["status"] == "not-gradable"
    assert "process_results" in gradability["kinds_custom"]["reason"]
    assert "kinds_custom" in gradability["kinds_custom"]["reason"]
    version = get_suite_version(home.catalog, home.kinds_suite, 1)  # what GET /suites/{id}/versions/1 serves
    assert {t["name"]: t["gradability"] for t in version["manifest"]["tasks"]} == gradability

    instance = dg.DagsterInstance.ephemeral()
    run = runs.create_run(home.catalog, home.lake, {"suite_id": home.kinds_suite, "models": ["tiny"]})
    execute_in_process(instance, home.catalog, home.lake, run["id"], defs.resolve_job_def(GENERATION_JOB),
                       run_config=quiet_run_config)
    run = runs.get_run(home.catalog, run["id"], partitions=True)
    assert run["status"] == "completed", run["error"]
    reason = gradability["kinds_custom"]["reason"]

    metrics = run["metrics"]["tiny"]
    assert metrics["kinds_custom"] == {"not_gradable": {"status": "not-gradable", "reason": reason}}
    assert metrics["kinds_plain"]["exact_match,none"]["n"] == 3
    assert run["task_errors"] == [{"model": "tiny", "task_id": _task_id(run, home, "kinds_custom"),
                                   "task": "kinds_custom", "code": "not-gradable", "message": reason}]
    # one metric erring on every doc leaves the doc's other metric standing
    two = metrics["kinds_two_metrics"]
    assert two["exact_match,none"]["n"] == 3 and two["exact_match,none"]["value"] is not None
    assert two["numeric_match,none"]["n"] == 0 and two["numeric_match,none"]["failed"] == 3
    assert two["numeric_match,none"]["value"] is None

    samples, _ = list_samples(home.catalog, home.lake, run["id"], task_id=_task_id(run, home, "kinds_custom"))
    assert len(samples) == 3
    assert all(s["status"] == "completed" and s["scores"] == {} and s["output_text"] is not None
               and s["error"] == {"type": "not-gradable", "message": reason} for s in samples)

    report = markdown(run)
    assert "Not graded by rule" in report and reason in report
    assert "kinds_custom" not in [line.split("|")[2].strip() for line in report.splitlines()
                                  if line.startswith("| tiny") and "exact_match" in line]

    grades_md = {}
    for record in instance.fetch_materializations(dg.AssetKey("grades"), limit=20).records:
        mat = record.asset_materialization
        grades_md[mat.partition] = {k: v.value for k, v in mat.metadata.items()}
    statuses = {md["gradability"] for md in grades_md.values()}
    assert statuses == {"native", "not-gradable"}
    assert any(md["gradability_reason"] == reason for md in grades_md.values())


def _task_id(run: dict, home, name: str) -> str:
    return next(t["id"] for t in list_tasks(home.catalog) if t["name"] == name)


def test_what_ran_is_recorded_with_each_partition(eval_home, tiny_model, quiet_run_config):
    """vLLM's auto dtype downcasts the float32 checkpoint (lm-eval's hf backend would not): the partition
    says so, in the run, the samples, the report and the Dagster metadata."""
    add_model(eval_home.catalog, "tiny-auto", {"backend": "vllm", "path": str(tiny_model), "max_model_len": 256})
    task = next(t["id"] for t in list_tasks(eval_home.catalog) if t["name"] == "ev_gen_a")
    instance = dg.DagsterInstance.ephemeral()
    run = runs.create_run(eval_home.catalog, eval_home.lake, {
        "suite_id": eval_home.suite_id, "models": ["tiny-auto"], "task_ids": [task], "max_samples_per_task": 2,
        "generation": {"max_gen_toks": 4}})
    execute_in_process(instance, eval_home.catalog, eval_home.lake, run["id"], defs.resolve_job_def(GENERATION_JOB),
                       run_config=quiet_run_config)
    run = runs.get_run(eval_home.catalog, run["id"], partitions=True)
    assert run["status"] == "completed", run["error"]
    (part,) = run["partitions"]
    engine = part["engine"]
    assert engine["backend"] == "vllm" and engine["dtype"] == "bfloat16" and engine["max_model_len"] == 256
    assert run["engines"] == {"tiny-auto": engine}
    assert engine["tokenizer"] == str(tiny_model)
    samples, _ = list_samples(eval_home.catalog, eval_home.lake, run["id"])
    assert samples and all(s["engine"] == engine for s in samples)
    assert "bfloat16" in markdown(run)
    mat = instance.fetch_materializations(dg.AssetKey("generations"), limit=1).records[0].asset_materialization
    assert mat.metadata["engine"].value == engine


def test_checks_fail_with_a_reason_instead_of_raising():
    strings = pd.DataFrame({"doc_id": [0, 1], "filter": ["none"] * 2, "metric": ["acc"] * 2,
                            "score": ["high", "low"], "grader": ["rule"] * 2, "error": [None, None],
                            "rubric_sha256": [None, None]})
    v = check_grades(strings)
    assert not v.success and "not numbers" in v.summary()
    nulls = strings.assign(score=[None, None], error=["not gradable by rules: x", "not gradable by rules: x"])
    v = check_grades(nulls)
    assert v.success and "carry an error" in v.summary()
    broken = check_metrics(pd.DataFrame({"metric": ["acc"], "value": [0.5]}), strings)
    assert not broken.success and "could not evaluate" in broken.summary()


def test_loglikelihood_requests_that_cannot_fit_the_window_are_refused_alone(tiny_model):
    from transformers import AutoTokenizer

    tokens = Tokenization(AutoTokenizer.from_pretrained(tiny_model), max_length=32)
    span = tokens.loglikelihood_span("word " * 100, " end", window=31)
    assert len(span.tokens) == 31 and 1 <= span.ctxlen < 31
    with pytest.raises(Unservable, match="continuation"):
        tokens.loglikelihood_span("x", " y" * 60, window=31)
    with pytest.raises(Unservable, match="max_gen_toks 40"):
        tokens.truncate_for_generation([1] * 10, 40)


def test_openai_backend_sends_token_ids_left_truncated_to_the_window(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompt = "Question: " + "the quick brown fox " * 30 + "\nAnswer:"
    params = {"until": ["\n"], "max_gen_toks": 16, "temperature": 0.0}
    with FlakyOpenAI() as server:
        model = Model("served", "served", OpenAIOptions(base_url=server.url, tokenizer=str(tiny_model),
                                                        max_length=64))
        (out,) = backend_for(model).backend.generate([GenRequest(0, 0, "generate_until", prompt, None, params)],
                                                     {}, {})
    assert out.error is None
    (body,) = server.bodies
    # lm-eval's TemplateAPI keeps max_length - 1 as its window, less max_gen_toks for the prompt
    assert body["prompt"] == tok(prompt).input_ids[-(64 - 1 - 16):]


def test_malformed_configs_are_bad_input_naming_the_field(tmp_path, sqlite_catalog, lake):
    cases = {"list_config": ({"configs": {"t": [1]}}, "configs['t'] is not an object"),
             "list_samples": ({"n-samples": [1]}, "'n-samples' is not an object"),
             "huge_repeats": ({"configs": {"t": {"repeats": 10 ** 9}}}, "configs['t'].repeats is 1000000000"),
             "text_repeats": ({"configs": {"t": {"repeats": "64"}}}, "configs['t'].repeats is '64'")}
    for name, (extra, reason) in cases.items():
        folder = tmp_path / name / "org__m"
        folder.mkdir(parents=True)
        (folder / "results_2026-01-01T00-00-00.000001.json").write_text(
            json.dumps({"results": {"t": {"acc,none": 0.5}}, **extra}))
        result = import_results(sqlite_catalog, lake, {"source": {"type": "path", "url": str(folder.parent)},
                                                       "suite_name": name})
        assert result.imported_runs == 0 and result.suite_id is None, name
        assert [e["reason"] for e in result.errors] and reason in result.errors[0]["reason"], (name, result.errors)


def test_gradability_sees_python_wherever_lm_eval_writes_it():
    from eval_pipeline.scoring.gradability import decide

    # no config kept (a legacy file, a bare results mapping): the registry says truthfulqa_mc2 is Python-scored
    assert decide("truthfulqa_mc2", "multiple_choice", {}, ["acc"]).status == "lm-eval-registry"
    assert decide("lambada_openai", None, {}, ["acc", "perplexity"]).status == "native"
    for config in ({"metric_list": [{"metric": "acc", "aggregation": "<built-in function max>"}]},
                   {"metric_list": [{"metric": "functools.partial(<function f at 0x1>)"}]},
                   {"filter_list": [{"name": "x", "filter": [{"function": "custom", "filter_fn": "def f(x):\n  x"}]}]}):
        assert decide("my_task", "generate_until", config, ["exact_match"]).status == "not-gradable", config


def test_edge_inputs_get_lm_evals_answer_or_a_reason(tiny_model):
    from transformers import AutoTokenizer

    from eval_pipeline.harness.results import results_mapping_problem
    from eval_pipeline.scoring.rules import TaskRules, multiple_choice_scores

    rules = TaskRules("multiple_choice", [{"metric": "acc"}, {"metric": "acc_norm"}, {"metric": "acc_bytes"}])
    # an empty choice: lm-eval divides with numpy (-inf), it does not fail
    assert multiple_choice_scores(rules, [-1.0, -2.0], [False, False], ["", "b"], 1) == {
        "acc": 0.0, "acc_norm": 1.0, "acc_bytes": 1.0}
    assert results_mapping_problem({"t": {"acc,none": float("nan")}}) is not None
    assert results_mapping_problem({"t": {"acc_stderr,none": 0.1}}) is not None
    tokens = Tokenization(AutoTokenizer.from_pretrained(tiny_model), max_length=32)
    with pytest.raises(Unservable, match="only whitespace"):
        tokens.loglikelihood_span("  \n", " yes", window=31)


def test_cli_registers_an_openai_model_with_its_tokenizer(tmp_path, tiny_model):
    from helpers import run_cli

    out = run_cli(tmp_path / "home", "models", "add", "served", "--backend", "openai", "--base-url",
                  "http://127.0.0.1:9/v1", "--tokenizer", str(tiny_model), "--max-length", "256", "--no-add-bos-token")
    assert out.returncode == 0, out.stderr
    model = json.loads(out.stdout)
    assert (model["tokenizer"], model["max_length"], model["add_bos_token"]) == (str(tiny_model), 256, False)
