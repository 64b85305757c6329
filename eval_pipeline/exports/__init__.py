"""Exports of finished runs: export tasks and their publication (tasks.py), the bundle's samples, metrics and
manifest files (bundle.py), and the `lm-eval` format, a run as lm-evaluation-harness 0.4.13's own results and
samples files (lm_eval_results.py, lm_eval_samples.py, lm_eval_format.py)."""
