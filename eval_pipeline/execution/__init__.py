"""Carrying out a run: generating a partition's requests, and finishing the run (metrics object, report)."""
