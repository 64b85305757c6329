"""The run report as one self-contained HTML page, charts drawn by Plotly (plotly.js embedded once, so the
file opens offline): for a backfill of a model's revisions its training curve; a heat map of every (task,
metric) by model; each task's models side by side with their 95% intervals (one task at a time, chosen
from a menu); deltas against the imported baseline and the schedule's previous run with their
significance; the metrics as an HTML table; and a sample browser."""
from __future__ import annotations

import html
import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from eval_pipeline.results.cost import COST_HEADERS, cost_rows
from eval_pipeline.runs.records import RunObject

CHECKPOINTS = "checkpoints"  # run metadata of a backfill of revisions: its model names, JSON, in order
ALPHA = 0.05  # what the delta chart marks significant; a scheduled run's own alpha decides its regressions
PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.regression td{background:#fde2e2}
pre{white-space:pre-wrap;max-width:48rem;max-height:14rem;overflow:auto;margin:0;font-size:12px}
details{margin:.3rem 0}
summary{cursor:pointer;font-weight:600}
.muted{color:#666}
"""


def _rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per (model, task, metric, filter) with a value; not_gradable entries left out."""
    out = []
    for model, tasks in sorted(metrics.items()):
        for task, values in sorted(tasks.items()):
            for key, v in sorted(values.items()):
                if key == "not_gradable" or v.get("value") is None:
                    continue
                metric, _, filt = key.partition(",")
                out.append({"model": model, "task": task, "metric": metric, "filter": filt, "key": key,
                            "row": f"{task} · {key}", **{k: v.get(k) for k in
                                                        ("value", "stderr", "ci_low", "ci_high", "n", "failed")}})
    return out


def _e(text: str) -> str:
    """A name as Plotly text: Plotly renders pseudo-HTML (links, tags) in labels, hover text and menus, and
    `%{...}` in hover templates, so user names are escaped for both."""
    return html.escape(text).replace("%", "&#37;")


def _for_plotly(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "model": _e(r["model"]), "task": _e(r["task"]), "key": _e(r["key"]), "row": _e(r["row"])}
            for r in rows]


def _div(fig: go.Figure, div_id: str) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                           config={"displaylogo": False, "responsive": True}))


def _colour_scale(grid: pd.DataFrame) -> pd.DataFrame:
    """What a cell's colour encodes: the value itself on rows whose values all lie in [0, 1] (accuracies,
    exact match); elsewhere (bleu, perplexities) the value scaled within its row, so one metric's range
    does not wash out the others."""
    def scaled(row: pd.Series) -> pd.Series:
        lo, hi = row.min(), row.max()
        if lo >= 0 and hi <= 1:
            return row
        return (row - lo) / (hi - lo) if hi > lo else row * 0 + 0.5
    return grid.apply(scaled, axis=1)


def heat_map(rows: list[dict[str, Any]]) -> str:
    """Every (task, metric,filter) row by model; the text and hover give the value (the hover also the
    interval and n). One cell per pair, so 20 models x 60 tasks stays one readable grid."""
    df = pd.DataFrame(rows)
    models, labels = sorted(df["model"].unique()), sorted(df["row"].unique())
    grid = df.pivot_table(index="row", columns="model", values="value", aggfunc="first").reindex(
        index=labels, columns=models)
    hover = df.assign(text=[f"{r.model}<br>{r.row}<br>{r.value:.4f}" + (
        f" [{r.ci_low:.4f}, {r.ci_high:.4f}]" if pd.notna(r.ci_low) else "") + f"<br>n={r.n}"
        for r in df.itertuples()]).pivot_table(index="row", columns="model", values="text", aggfunc="first"
                                               ).reindex(index=labels, columns=models)
    fig = go.Figure(go.Heatmap(
        z=_colour_scale(grid).to_numpy(), x=models, y=labels, colorscale="Viridis", zmin=0, zmax=1,
        hoverongaps=False, text=grid.map(lambda v: "" if pd.isna(v) else f"{v:.3f}").to_numpy(),
        texttemplate="%{text}" if grid.size <= 600 else None, customdata=hover.fillna("").to_numpy(),
        hovertemplate="%{customdata}<extra></extra>",
        colorbar={"title": {"text": "value<br>(rows outside<br>[0, 1]: scaled<br>within the row)"}}))
    rotated = len(models) > 6
    fig.update_layout(title="Every metric by model and task", height=max(320, 22 * len(labels) + 160),
                      margin={"l": 10, "r": 10, "t": 170 if rotated else 70, "b": 10},
                      yaxis={"autorange": "reversed", "automargin": True},
                      xaxis={"side": "top", "automargin": True, "tickangle": -45 if rotated else 0})
    return _div(fig, "heat-map")


def task_intervals(rows: list[dict[str, Any]]) -> str:
    """For the task chosen in the menu: each of its metrics, every model side by side, with the 95% interval."""
    df = pd.DataFrame(rows)
    tasks = sorted(df["task"].unique())
    fig, owner = go.Figure(), []
    for task in tasks:
        for key, group in df[df["task"] == task].groupby("key", sort=True):
            lo = (group["value"] - group["ci_low"]).where(group["ci_low"].notna(), 0)
            hi = (group["ci_high"] - group["value"]).where(group["ci_high"].notna(), 0)
            fig.add_trace(go.Scatter(
                x=group["model"], y=group["value"], mode="markers", name=key, visible=task == tasks[0],
                marker={"size": 10}, error_y={"type": "data", "array": hi, "arrayminus": lo, "visible": True},
                customdata=group[["ci_low", "ci_high", "n"]].to_numpy(),
                hovertemplate="%{x}<br>" + key + ": %{y:.4f} [%{customdata[0]:.4f}, %{customdata[1]:.4f}]"
                              "<br>n=%{customdata[2]}<extra></extra>"))
            owner.append(task)
    fig.update_layout(
        title=f"{tasks[0]}: every metric, models side by side (95% intervals)", scattermode="group",
        height=460, margin={"t": 90}, yaxis={"title": "value"}, xaxis={"type": "category", "automargin": True},
        updatemenus=[{"buttons": [{"label": task, "method": "update", "args": [
            {"visible": [o == task for o in owner]},
            {"title": f"{task}: every metric, models side by side (95% intervals)"}]} for task in tasks],
            "x": 1, "xanchor": "right", "y": 1.2, "yanchor": "top", "direction": "down"}])
    return _div(fig, "task-intervals")


def checkpoint_series(run: RunObject) -> list[str] | None:
    """The revision order of a backfill of one model's revisions: its run's metadata `checkpoints`, when
    that is a JSON list of the run's own model names (metadata anyone may set is not trusted further)."""
    raw = (run.get("metadata") or {}).get(CHECKPOINTS)
    try:
        order = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    models = set(run.get("models") or [])
    if not isinstance(order, list) or not order or not all(isinstance(m, str) and m in models for m in order):
        return None
    return order


def checkpoint_curve(rows: list[dict[str, Any]], order: list[str]) -> str:
    """A backfill of one model's revisions: each task's metrics against the revision order (`order`: the
    series' model names, `<model>@<revision>`), with 95% intervals; the task picked from a menu."""
    df = pd.DataFrame([r for r in rows if r["model"] in order])
    if df.empty:
        return ""
    rank = {m: i for i, m in enumerate(order)}
    df = df.assign(rank=df["model"].map(rank), revision=df["model"].map(lambda m: m.rsplit("@", 1)[-1]))
    tasks = sorted(df["task"].unique())
    fig, owner = go.Figure(), []
    for task in tasks:
        for key, group in df[df["task"] == task].sort_values("rank").groupby("key", sort=True):
            lo = (group["value"] - group["ci_low"]).where(group["ci_low"].notna(), 0)
            hi = (group["ci_high"] - group["value"]).where(group["ci_high"].notna(), 0)
            fig.add_trace(go.Scatter(
                x=group["revision"], y=group["value"], mode="lines+markers", name=key, visible=task == tasks[0],
                error_y={"type": "data", "array": hi, "arrayminus": lo, "visible": True},
                hovertemplate="%{x}: %{y:.4f}<extra>" + key + "</extra>"))
            owner.append(task)
    fig.update_layout(
        title=f"{tasks[0]}: the training curve (95% intervals)", height=440, margin={"t": 90},
        xaxis={"type": "category", "title": "revision (in the order backfilled)",
               "categoryorder": "array", "categoryarray": [m.rsplit("@", 1)[-1] for m in order]},
        yaxis={"title": "value"},
        updatemenus=[{"buttons": [{"label": task, "method": "update", "args": [
            {"visible": [o == task for o in owner]}, {"title": f"{task}: the training curve (95% intervals)"}]}
            for task in tasks], "x": 1, "xanchor": "right", "y": 1.2, "yanchor": "top", "direction": "down"}])
    return _div(fig, "checkpoint-curve")


def delta_chart(deltas: list[dict[str, Any]]) -> str:
    """Each delta with its 95% interval (1.96 stderr), red where significant (p < ALPHA, or a scheduled
    run's regression)."""
    labels = [d["label"] for d in deltas]
    half = [1.96 * d["stderr"] if d["stderr"] is not None else 0 for d in deltas]
    colour = ["#d62728" if d["significant"] else "#7f7f7f" for d in deltas]
    fig = go.Figure(go.Scatter(
        x=[d["delta"] for d in deltas], y=labels, mode="markers", marker={"color": colour, "size": 9},
        error_x={"type": "data", "array": half, "visible": True},
        text=[f"p={d['p']:.3g}" if d["p"] is not None else "p unknown" for d in deltas],
        hovertemplate="%{y}<br>delta %{x:.4f}<br>%{text}<extra></extra>"))
    fig.add_vline(x=0, line_color="#999")
    fig.update_layout(title="Deltas against the imported baseline and the previous run (red: significant)",
                      height=max(300, 24 * len(labels) + 120), yaxis={"autorange": "reversed", "automargin": True},
                      xaxis={"title": "now - then"}, margin={"t": 50})
    return _div(fig, "deltas")


def _deltas(comparisons: dict[str, Any] | None, scheduled: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = [{"label": _e(f"{h['model']} · {h['task']} · {h['metric']},{h['filter']} vs imported"),
            "delta": h["delta"], "stderr": h["stderr"], "p": h["p_value"],
            "significant": h["p_value"] is not None and h["p_value"] < ALPHA}
           for h in (comparisons or {}).get("history", []) if h["delta"] is not None]
    out += [{"label": _e(f"{c['model']} · {c['task']} · {c['metric']},{c['filter']} vs {c['against']}"),
             "delta": c["difference"], "stderr": c["stderr"], "p": c["p_adjusted"], "significant": c["regression"]}
            for c in scheduled or [] if c["difference"] is not None]
    return out


class _Pre(str):
    """Text shown preformatted (prompts and answers keep their lines)."""


def _cell(value: Any) -> str:
    if isinstance(value, _Pre):
        return f"<td><pre>{html.escape(str(value))}</pre></td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def table(headers: list[str], rows: list[list[Any]], row_classes: list[str] | None = None) -> str:
    """An HTML table: floats to 4 decimals and right-aligned, text escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(f'<tr class="{(row_classes or [""] * len(rows))[i]}">' + "".join(map(_cell, r)) + "</tr>"
                   for i, r in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def metrics_table(rows: list[dict[str, Any]]) -> str:
    """The metrics as a table: model, task, metric, filter, value, stderr, 95% CI, n, failed."""
    return table(["model", "task", "metric", "filter", "value", "stderr", "95% CI", "n", "failed"], [
        [r["model"], r["task"], r["metric"], r["filter"], r["value"], r["stderr"],
         f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["ci_low"] is not None else "", r["n"], r["failed"]]
        for r in rows])


def comparison_tables(comparisons: dict[str, Any] | None, scheduled: list[dict[str, Any]] | None) -> str:
    """Paired differences between models, deltas against imported history, a scheduled run's comparisons
    (regressions first and highlighted)."""
    out = []
    if comparisons and comparisons["pairs"]:
        out += ["<h2>Paired differences (model a - model b, same docs)</h2>", table(
            ["task", "metric,filter", "a", "b", "difference", "stderr", "p", "n"],
            [[p["task"], f"{p['metric']},{p['filter']}", p["model_a"], p["model_b"], p["difference"], p["stderr"],
              p["p_value"], p["n"]] for p in comparisons["pairs"]])]
    if comparisons and comparisons["history"]:
        out += ["<h2>Against the imported baseline</h2>", table(
            ["model", "task", "metric,filter", "now", "then", "delta", "stderr", "p", "dtype now / then"],
            [[h["model"], h["task"], f"{h['metric']},{h['filter']}", h["value"], h["historical_value"], h["delta"],
              h["stderr"], h["p_value"], f"{h.get('dtype') or '?'} / {h.get('historical_dtype') or 'not recorded'}"]
             for h in comparisons["history"]])]
    if scheduled:
        ordered = sorted(scheduled, key=lambda c: (not c["regression"], c["model"], c["task"], c["metric"]))
        out += ["<h2>Against the schedule's previous run and the baseline (p adjusted, Benjamini-Hochberg)</h2>",
                table(["", "model", "task", "metric,filter", "against", "now", "then", "difference", "stderr",
                       "p (BH)", "test"],
                      [["REGRESSION" if c["regression"] else "", c["model"], c["task"], f"{c['metric']},{c['filter']}",
                        c["against"], c["value"], c["against_value"], c["difference"], c["stderr"], c["p_adjusted"],
                        "paired" if c["paired"] else "unpaired"] for c in ordered],
                      ["regression" if c["regression"] else "" for c in ordered])]
    return "".join(out)


def _text(target: Any) -> str:
    return target if isinstance(target, str) else json.dumps(target)


def sample_browser(samples: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """Per task and model, the first docs' prompt, prediction, target and scores, failures first (`samples`:
    task -> model -> the rows report_samples chose)."""
    if not samples:
        return ""
    out = ["<h2>Samples</h2><p class='muted'>Per task and model: failed requests first, then the lowest "
           "scores, then document order.</p>"]
    for task, by_model in sorted(samples.items()):
        inner = "".join(
            f"<h4>{html.escape(model)}</h4>" + table(["doc", "prompt", "prediction", "target", "scores", "error"], [
                [s["sample_index"], _Pre(s["prompt"]), _Pre(s["output_text"] or ""), _Pre(_text(s["target"])),
                 ", ".join(f"{k} {v:g}" for k, v in sorted(s["scores"].items())), (s["error"] or {}).get("message")]
                for s in rows])
            for model, rows in sorted(by_model.items()))
        out.append(f"<details><summary>{html.escape(task)}</summary>{inner}</details>")
    return "".join(out)


def _cost(run: RunObject) -> str:
    rows = cost_rows(run)
    return ("<h2 id='cost'>Cost of generation</h2><p class='muted'>GPU-seconds: engine busy time x the GPUs it "
            f"held; wall: the generation steps' time.</p>{table(COST_HEADERS, rows)}") if rows else ""


def page(run: RunObject, comparisons: dict[str, Any] | None = None, scheduled: list[dict[str, Any]] | None = None,
         samples: dict[str, dict[str, list[dict[str, Any]]]] | None = None) -> str:
    """The whole report page for an `eval.run` object (its `metrics`), with optional comparisons, a
    scheduled run's comparisons and sample rows; the metrics object is also embedded as JSON (#metrics)."""
    rows = _rows(run.get("metrics") or {})
    deltas = _deltas(comparisons, scheduled)
    plotted = _for_plotly(rows)
    charts = (heat_map(plotted) + task_intervals(plotted)) if rows else "<p>No metrics yet.</p>"
    series = checkpoint_series(run)
    if rows and series:
        charts = checkpoint_curve(plotted, [_e(m) for m in series]) + charts
    title = html.escape(run.get("name") or run["id"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Eval run {title}</title>"
        f"<style>{PAGE_CSS}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<h1>Eval run {title}</h1><p class='muted'>{html.escape(run['id'])} · suite {html.escape(run['suite_id'])} "
        f"v{run['suite_version']} · status {html.escape(run['status'])} · models "
        f"{html.escape(', '.join(run.get('models') or []))}</p>"
        f"{charts}{delta_chart(deltas) if deltas else ''}<h2>Metrics</h2>{metrics_table(rows)}{_cost(run)}"
        f"{comparison_tables(comparisons, scheduled)}{sample_browser(samples or {})}"
        f"<script type='application/json' id='metrics'>{html.escape(json.dumps(run.get('metrics')))}</script>"
        "</body></html>")
