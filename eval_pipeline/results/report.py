"""The run report: a Markdown table (Dagster metadata, `eval-pipeline runs report`) and an HTML page
with a chart of every model on every task with 95% intervals, stored as the run's artifact.

The chart is inline SVG written here: one horizontal bar per (task, model) for the task's first metric,
a whisker for its interval. It keeps the page one self-contained file with no plotting dependency."""
from __future__ import annotations

import html
import json
from typing import Any

from tabulate import tabulate

from eval_pipeline.results.comparisons import run_comparisons
from eval_pipeline.runs import get_run
from eval_pipeline.runs.records import RunObject
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.files import register_file
from eval_pipeline.stores.lake import Lake

COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac"]


def _fmt(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def metric_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """One table row per (model, task, "metric,filter") of a run's metrics object, sorted: model, task, key,
    value, stderr, "[ci_low, ci_high]" (4 decimals, "" for None), n, failed; not_gradable entries left out."""
    rows = []
    for model, tasks in sorted(metrics.items()):
        for task, values in sorted(tasks.items()):
            for key, v in sorted(values.items()):
                if key == "not_gradable":
                    continue
                rows.append([model, task, key, _fmt(v["value"]), _fmt(v["stderr"]),
                             f"[{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]" if v["value"] is not None else "",
                             v["n"], v.get("failed", 0)])
    return rows


def schedule_table(scheduled: list[dict[str, Any]]) -> list[str]:
    """The report's lines for a scheduled run's comparisons (schedules.regressions.compare_run's rows),
    regressions first."""
    if not scheduled:
        return []
    rows = sorted(scheduled, key=lambda c: (not c["regression"], c["model"], c["task"], c["metric"], c["against"]))
    return ["", "Against the schedule's previous run and the imported baseline (p adjusted with "
            "Benjamini-Hochberg over the run's comparisons):", tabulate(
                [["REGRESSION" if c["regression"] else "", c["model"], c["task"], f"{c['metric']},{c['filter']}",
                  c["against"], _fmt(c["value"]), _fmt(c["against_value"]), _fmt(c["difference"]),
                  _fmt(c["stderr"]), _fmt(c["p_adjusted"]), "paired" if c["paired"] else "unpaired"]
                 for c in rows],
                headers=["", "model", "task", "metric,filter", "against", "now", "then", "difference", "stderr",
                         "p (BH)", "test"], tablefmt="github")]


def markdown(run: RunObject, comparisons: dict[str, Any] | None = None,
             scheduled: list[dict[str, Any]] | None = None) -> str:
    """The report's Markdown tables of an `eval.run` object: metrics, tasks not graded by rule, what ran
    (engines, when it has `partitions`), run_comparisons' paired differences and history deltas, and a
    scheduled run's comparisons with its regressions (`scheduled`)."""
    out = [f"### {run.get('name') or run['id']}: {run['status']}",
           tabulate(metric_rows(run.get("metrics") or {}),
                    headers=["model", "task", "metric,filter", "value", "stderr", "95% CI", "n", "failed"],
                    tablefmt="github")]
    skipped = [[m, task, v["not_gradable"]["status"], v["not_gradable"]["reason"]]
               for m, tasks in sorted((run.get("metrics") or {}).items()) for task, v in sorted(tasks.items())
               if "not_gradable" in v]
    if skipped:
        out += ["", "Not graded by rule (no number is shown for these):",
                tabulate(skipped, headers=["model", "task", "status", "reason"], tablefmt="github")]
    engines = {p["model"]: engine for p in run.get("partitions") or [] if (engine := p.get("engine"))}
    if engines:
        out += ["", "What ran:", tabulate(
            [[m, e.get("backend"), e.get("dtype", ""), e.get("max_model_len", ""), e.get("tokenizer", "")]
             for m, e in sorted(engines.items())], headers=["model", "backend", "dtype", "max_model_len", "tokenizer"],
            tablefmt="github")]
    if comparisons and comparisons["pairs"]:
        out += ["", "Paired differences (model_a - model_b, same docs):", tabulate(
            [[p["task"], f"{p['metric']},{p['filter']}", p["model_a"], p["model_b"], _fmt(p["difference"]),
              _fmt(p["stderr"]), _fmt(p["p_value"]), p["n"]] for p in comparisons["pairs"]],
            headers=["task", "metric,filter", "a", "b", "difference", "stderr", "p", "n"], tablefmt="github")]
    if comparisons and comparisons["history"]:
        out += ["", "Against imported history (dtype now / then: vLLM's auto dtype downcasts float32 checkpoints, "
                "lm-eval's hf backend keeps them):", tabulate(
            [[h["model"], h["task"], f"{h['metric']},{h['filter']}", _fmt(h["value"]), _fmt(h["historical_value"]),
              _fmt(h["delta"]), _fmt(h["stderr"]), _fmt(h["p_value"]),
              f"{h.get('dtype') or '?'} / {h.get('historical_dtype') or 'not recorded'}"]
             for h in comparisons["history"]],
            headers=["model", "task", "metric,filter", "now", "then", "delta", "stderr", "p", "dtype"],
            tablefmt="github")]
    out += schedule_table(scheduled or [])
    return "\n".join(out)


def _chart(metrics: dict[str, Any]) -> str:
    """One bar per (task, model) for each task's first metric, with its 95% interval."""
    models = sorted(metrics)
    tasks = sorted({task for m in models for task in metrics[m]})
    bars = []
    for task in tasks:
        keys = sorted({k for m in models for k in (metrics[m].get(task) or {}) if "," in k})
        if not keys:
            continue
        for i, m in enumerate(models):
            v = (metrics[m].get(task) or {}).get(keys[0])
            if v and v["value"] is not None:
                bars.append((f"{task} · {keys[0]}", m, i, v))
    if not bars:
        return "<p>No metrics.</p>"
    top = max([1.0] + [max(b[3]["value"], b[3]["ci_high"] or 0) for b in bars])
    width, left, row = 720, 260, 22
    scale = (width - left - 20) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row * len(bars) + 30}" '
             'font-family="sans-serif" font-size="12">']
    for j, (label, model, i, v) in enumerate(bars):
        y = 10 + j * row
        x1 = left + v["value"] * scale
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{html.escape(label)} · '
                     f'{html.escape(model)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{max(v["value"] * scale, 0):.1f}" height="{row - 6}" '
                     f'fill="{COLOURS[i % len(COLOURS)]}"><title>{html.escape(model)}: {v["value"]:.4f}</title></rect>')
        if v["ci_low"] is not None:
            lo, hi = left + max(v["ci_low"], 0) * scale, left + v["ci_high"] * scale
            parts.append(f'<line class="ci" x1="{lo:.1f}" x2="{hi:.1f}" y1="{y + row / 2}" y2="{y + row / 2}" '
                         'stroke="black" stroke-width="1.5"/>')
        parts.append(f'<text x="{x1 + 4:.1f}" y="{y + 14}">{v["value"]:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_page(run: RunObject, comparisons: dict[str, Any] | None = None,
              scheduled: list[dict[str, Any]] | None = None) -> str:
    """The report as one self-contained HTML page: a chart of each task's first metric with 95% intervals,
    the Markdown tables, and the metrics object as JSON (script `#metrics`)."""
    md = markdown(run, comparisons, scheduled)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run['id'])}</title></head>"
            f"<body><h1>Eval run {html.escape(run.get('name') or run['id'])}</h1>"
            f"<p>suite {html.escape(run['suite_id'])} v{run['suite_version']} · status {run['status']}</p>"
            f"{_chart(run.get('metrics') or {})}<pre>{html.escape(md)}</pre>"
            f"<script type='application/json' id='metrics'>{html.escape(json.dumps(run.get('metrics')))}</script>"
            "</body></html>")


def write_report(catalog: Catalog, lake: Lake, run_id: str, scheduled: list[dict[str, Any]] | None = None) -> str:
    """Write reports/<run>/report.html (again, with `scheduled` comparisons once a scheduled run's are
    known), register it as a file and list it among the run's artifacts; returns its lake path. Raises
    NotFound for an unknown run."""
    run = get_run(catalog, run_id, partitions=True)
    page = html_page(run, run_comparisons(catalog, lake, run_id), scheduled)
    stored = lake.write_bytes(f"reports/{run_id}/report.html", page.encode())
    with catalog.session() as s:
        file_id = register_file(s, "run_report", stored)
        row = s.get(t.Run, run_id)
        assert row is not None and file_id is not None  # get_run found the run above; `stored` is a file
        if file_id not in (row.artifact_file_ids or []):
            row.artifact_file_ids = [*(row.artifact_file_ids or []), file_id]
    return stored.path
