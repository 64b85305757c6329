"""Grading: per-sample scores from generations, with lm-evaluation-harness's semantics."""
