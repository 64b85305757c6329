"""Benchmark rule grading (not a test): N generate_until samples through lm-eval's regex filter chain
and exact_match with gsm8k's options, as the `grades` asset runs them; then the bootstrap standard
error (100,000 resamples over 10,000 samples) of a continuous statistic (gathered indices on every
core) and of f1 (multinomial counts over confusion cells), and of BLEU (capped at 1,000 resamples: each
resample's score is sacrebleu's, in Python). Last, the loglikelihood_rolling path without the model:
--rolling-docs documents of --rolling-tokens tokens each tokenised and cut into lm-eval's rolling windows
(the tiny model's tokenizer, a 256-token window), then graded and aggregated (word_perplexity,
byte_perplexity, bits_per_byte) from made-up window loglikelihoods.

    .venv/bin/python bench/grading.py [--samples 1000000] [--repeat 3] [--iters 100000] [--n 10000]
                                      [--rolling-docs 10000] [--rolling-tokens 2000]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from eval_pipeline.results.bootstrap import bootstrap_stderr  # noqa: E402
from eval_pipeline.scoring.corpus import CORPUS_METRICS, label_stats, text_stats  # noqa: E402
from eval_pipeline.scoring.rules import TaskRules, exact_match_scores, filtered_predictions  # noqa: E402

RULES = TaskRules("generate_until", metrics=[
    {"metric": "exact_match", "ignore_case": True, "ignore_punctuation": False,
     "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}], filters=[
    {"name": "strict-match", "filter": [{"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                                        {"function": "take_first"}]}])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--iters", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rolling-docs", type=int, default=10_000)
    ap.add_argument("--rolling-tokens", type=int, default=2_000)
    ap.add_argument("--only-rolling", action="store_true")
    args = ap.parse_args()
    bench_rolling(args)
    if args.only_rolling:
        return
    bench_bootstrap(args)
    rng = random.Random(0)
    golds = [str(rng.randint(0, 9999)) for _ in range(args.samples)]
    outputs = [[f"Step by step: {g} apples, so the total is\n#### {g if rng.random() < 0.6 else int(g) + 1}"]
               for g in golds]
    docs = [{}] * args.samples
    filter_s, score_s = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        predictions = filtered_predictions(RULES, outputs, docs)["strict-match"]
        t1 = time.perf_counter()
        scores = exact_match_scores(predictions, golds, **RULES.metric_kwargs("exact_match"))
        t2 = time.perf_counter()
        filter_s.append(t1 - t0)
        score_s.append(t2 - t1)
    med = statistics.median
    total = med(filter_s) + med(score_s)
    print(f"{args.samples:,} samples, median of {args.repeat}: filters {med(filter_s):.2f} s, exact_match "
          f"{med(score_s):.2f} s, total {total:.2f} s ({args.samples / total:,.0f} samples/s); "
          f"mean score {sum(scores) / len(scores):.4f}")


def bench_bootstrap(args) -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(args.n)
    golds = rng.integers(0, 2, args.n)
    _, f1_stats = label_stats("f1", golds.tolist(), np.where(rng.random(args.n) < 0.8, golds, 1 - golds).tolist(), 2)
    words = "the a cat dog sat ran on under mat tree red blue green small big old new".split()
    text_rng = random.Random(1)
    refs = [" ".join(text_rng.choices(words, k=text_rng.randint(4, 20))) for _ in range(args.n)]
    preds = [" ".join(w for w in r.split() if text_rng.random() < 0.8) + " " + text_rng.choice(words) for r in refs]
    t0 = time.perf_counter()
    _, bleu_stats = text_stats("bleu", refs, preds)
    print(f"bleu segment statistics of {args.n:,} samples (sacrebleu): {time.perf_counter() - t0:.2f} s")
    bleu = CORPUS_METRICS["bleu"]
    cases = [("continuous mean", scores, lambda sums: sums[:, 0] / args.n, args.iters),
             ("f1", f1_stats, CORPUS_METRICS["f1"].value_of_sums, args.iters),
             ("bleu", bleu_stats, bleu.value_of_sums, min(args.iters, bleu.max_iters))]
    for name, stats, value_of_sums, iters in cases:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            stderr = bootstrap_stderr(stats, value_of_sums, iters)
            times.append(time.perf_counter() - t0)
        print(f"bootstrap {name}: {iters:,} resamples over {args.n:,} samples, median of {args.repeat}: "
              f"{statistics.median(times):.2f} s (stderr {stderr:.5f})")


def bench_rolling(args) -> None:
    import json
    import tempfile

    import pyarrow as pa
    from transformers import AutoTokenizer

    from eval_pipeline.demo.tiny_model import build_tiny_model
    from eval_pipeline.generation.tokens import Tokenization
    from eval_pipeline.grading.grade_files import grades_table
    from eval_pipeline.results.metrics import partition_metrics
    from eval_pipeline.scoring.lm_eval_code import grade_rolling
    from eval_pipeline.scoring.rules import TaskRules

    folder = build_tiny_model(Path(tempfile.gettempdir()) / "eval-pipeline-bench-tiny")
    tokens = Tokenization(AutoTokenizer.from_pretrained(folder), max_length=256)
    rng = random.Random(2)
    vocab = [t for t in tokens.tokenizer.get_vocab() if t.isalpha() and len(t) > 2]
    unit = " ".join(rng.choice(vocab) for _ in range(400))
    per_unit = len(tokens.encode(unit, add_special_tokens=False))
    text = " ".join([unit] * (args.rolling_tokens // per_unit + 1))
    ids = tokens.encode(text)[:args.rolling_tokens]
    docs = [tokens.tokenizer.decode(ids[:args.rolling_tokens - (i % 7)], skip_special_tokens=True)
            for i in range(args.rolling_docs)]
    t0 = time.perf_counter()
    spans = [tokens.rolling_spans(d, max_seq_len=tokens.max_length - 2, window=tokens.max_length - 1) for d in docs]
    t1 = time.perf_counter()
    windows = sum(map(len, spans))
    by_doc = {i: [{"logprob": -2.5 * sum(len(x.tokens) - x.ctxlen for x in sp), "error": None}]
              for i, sp in enumerate(spans)}
    inputs = {i: {"target": json.dumps(d)} for i, d in enumerate(docs)}
    rules = TaskRules("loglikelihood_rolling", metrics=[{"metric": m} for m in
                                                        ("word_perplexity", "byte_perplexity", "bits_per_byte")])
    t2 = time.perf_counter()
    rows: list = []
    grade_rolling(rules, by_doc, inputs, rows)
    table = partition_metrics(grades_table("run", "model", "task", rows), {"run_id": "run", "model": "model",
                                                                           "task_id": "task", "task": "task"}, 0)
    t3 = time.perf_counter()
    assert isinstance(table, pa.Table) and table.num_rows == 3
    print(f"loglikelihood_rolling, {args.rolling_docs:,} docs x {args.rolling_tokens:,} tokens: windows planned "
          f"{t1 - t0:.2f} s ({windows:,} windows, tokenising included), graded and aggregated {t3 - t2:.2f} s; "
          f"word_perplexity {table.to_pylist()[2]['value']:.3f}")


if __name__ == "__main__":
    main()
