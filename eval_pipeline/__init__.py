"""eval_pipeline: the core of the LLM evaluation service (plain functions; no Dagster imports)."""
