"""Readers for every lm-evaluation-harness output vintage (0.3.x to 0.4.13)."""
