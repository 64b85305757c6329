"""Dagster assets, one module per stage, each with its checks beside it."""
