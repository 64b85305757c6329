"""Planning a partition's requests from imported task inputs."""
import json

from helpers import generated_folder

from eval_pipeline.demo.synthetic import SyntheticTask
from eval_pipeline.generation.requests import effective_params, plan_requests
from eval_pipeline.historical.importer import import_results
from eval_pipeline.suites.versions import get_suite


def _inputs_path(catalog, lake, data) -> str:
    result = import_results(catalog, lake, {"source": {"type": "path", "url": str(data)}})
    (task,) = get_suite(catalog, result.suite_id)["versions"][-1]["manifest"]["tasks"]
    return task["inputs_path"]


def test_loglikelihood_requests_keep_a_context_per_choice(sqlite_catalog, lake, tmp_path):
    """Tasks such as winogrande vary the context and keep the continuation: each request keeps its own."""
    data = generated_folder(tmp_path / "data", models=("org/m",), tasks=[SyntheticTask("wino", "multiple_choice", 3)])
    (samples,) = data.rglob("samples_wino_*.jsonl")
    lines = [json.loads(x) for x in samples.read_text().splitlines()]
    lines[0]["arguments"] = {"gen_args_0": {"arg_0": "The cup fell off the table", "arg_1": " because it"},
                             "gen_args_1": {"arg_0": "The cup fell off the shelf", "arg_1": " because it"}}
    samples.write_text("".join(json.dumps(x) + "\n" for x in lines))
    requests = plan_requests(lake, _inputs_path(sqlite_catalog, lake, data), {}, None)
    doc0 = [(r.context, r.continuation) for r in requests if r.doc_id == 0]
    assert doc0 == [("The cup fell off the table", " because it"), ("The cup fell off the shelf", " because it")]
    doc1 = [r for r in requests if r.doc_id == 1]
    assert len(doc1) == 4 and len({r.context for r in doc1}) == 1 and [r.index for r in requests] == list(
        range(len(requests)))


def test_generation_settings_overlay_the_task_gen_kwargs():
    task = {"until": ["\n\n", "Question:"], "max_gen_toks": 100, "do_sample": False, "temperature": 0.0}
    assert effective_params(task, {}) == {"until": ["\n\n", "Question:"], "max_gen_toks": 100, "temperature": 0.0}
    run = {"stop": ["###"], "max_output_tokens": 7, "temperature": 0.7, "top_p": 0.9, "seed": 3}
    # the run's settings win over the task's do_sample false
    assert effective_params(task, run) == {"until": ["###"], "max_gen_toks": 7, "temperature": 0.7, "top_p": 0.9,
                                           "seed": 3}
    assert effective_params(task, run | {"do_sample": False})["temperature"] == 0.0
    assert effective_params(task, {"do_sample": True})["temperature"] == 1.0
    assert effective_params({"temperature": 0.3}, {})["temperature"] == 0.3
    assert effective_params({}, {})["max_gen_toks"] == 256  # lm-eval's default


def test_cache_keys_follow_every_setting_that_changes_an_answer():
    from eval_pipeline.generation.requests import GenRequest, request_settings

    r = GenRequest(0, 0, "generate_until", "2 + 2 =", None, effective_params({}, {"max_output_tokens": 8}))
    base = r.cache_key("model-a", request_settings({"max_output_tokens": 8, "use_cache": True}))
    assert base == r.cache_key("model-a", request_settings({"max_output_tokens": 8, "timeout_seconds": 5}))
    for other in (r.cache_key("model-b", {}),
                  r.cache_key("model-a", request_settings({"instructions": "Be brief."})),
                  r.cache_key("model-a", request_settings({"chat_template_kwargs": {"enable_thinking": False}})),
                  r.cache_key("model-a", request_settings({"extra_body": {"top_k": 5}})),
                  GenRequest(0, 0, "generate_until", "2 + 2 =", None,
                             effective_params({}, {"max_output_tokens": 9})).cache_key("model-a", {})):
        assert other != base
