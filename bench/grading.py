"""Benchmark rule grading (not a test): N generate_until samples through lm-eval's regex filter chain
and exact_match with gsm8k's options, as the `grades` asset runs them.

    .venv/bin/python bench/grading.py [--samples 1000000] [--repeat 3]

(The issue's bootstrap figure waits for the bootstrap stderr, not written yet.)
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_pipeline.grading.rules import TaskRules, exact_match_scores, filtered_predictions  # noqa: E402

RULES = TaskRules("generate_until", metrics=[
    {"metric": "exact_match", "ignore_case": True, "ignore_punctuation": False,
     "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}], filters=[
    {"name": "strict-match", "filter": [{"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                                        {"function": "take_first"}]}])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
