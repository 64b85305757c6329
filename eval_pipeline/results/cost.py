"""A run's generation cost as table rows, for the report's Markdown and HTML tables."""
from __future__ import annotations

from typing import Any

from eval_pipeline.runs.records import RunObject


def cost_rows(run: RunObject) -> list[list[Any]]:
    """[model, GPU-seconds, engine seconds, wall seconds, input tokens, output tokens] per model, then the
    run's total (empty when the run has no cost recorded)."""
    cost = run.get("cost")
    if not cost or not cost["by_model"]:
        return []
    keys = ("gpu_seconds", "engine_seconds", "wall_seconds", "input_tokens", "output_tokens")
    return [[m, *(c[k] for k in keys)] for m, c in cost["by_model"].items()] + [  # type: ignore[literal-required]
        ["all models", *(cost[k] for k in keys)]]  # type: ignore[literal-required]


COST_HEADERS = ["model", "GPU-seconds", "engine s", "wall s", "tokens in", "tokens out"]
