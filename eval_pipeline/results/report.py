"""The run report: Markdown tables (Dagster metadata, `eval-pipeline runs report`) and a self-contained
HTML page with Plotly charts (results/report_page.py), stored as the run's artifact."""
from __future__ import annotations

from typing import Any, cast

from sqlalchemy import select
from tabulate import tabulate

from eval_pipeline.results.comparisons import run_comparisons
from eval_pipeline.results.cost import COST_HEADERS, cost_rows
from eval_pipeline.results.report_page import page
from eval_pipeline.results.samples import list_samples
from eval_pipeline.runs import get_run
from eval_pipeline.runs.records import RunObject
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.files import register_file
from eval_pipeline.stores.lake import Lake

SAMPLES_SHOWN, SAMPLES_SCANNED = 20, 200  # the sample browser: rows shown of docs read, per (model, task)
SAMPLE_PARTITIONS = 100  # partitions with samples in the page at most (keeps a 20 x 60 report a few MB)


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


def cost_table(run: RunObject) -> list[str]:
    """The report's cost table (Markdown lines; none when nothing is recorded)."""
    rows = cost_rows(run)
    return ["", "Cost of generation (GPU-seconds: engine busy time x the GPUs it held):",
            tabulate(rows, headers=COST_HEADERS, tablefmt="github")] if rows else []


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
    out += cost_table(run)
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


def html_page(run: RunObject, comparisons: dict[str, Any] | None = None,
              scheduled: list[dict[str, Any]] | None = None,
              samples: dict[str, dict[str, list[dict[str, Any]]]] | None = None) -> str:
    """The report as one self-contained HTML page (results/report_page.py): charts with 95% intervals,
    deltas, the tables, a sample browser, and the metrics object as JSON (script `#metrics`)."""
    return page(run, comparisons, scheduled, samples)


def report_samples(catalog: Catalog, lake: Lake, run_id: str, *, per_partition: int = SAMPLES_SHOWN,
                   scanned: int = SAMPLES_SCANNED) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """task name -> model -> up to `per_partition` `eval.sample` objects of its first `scanned` docs:
    failed requests first, then the lowest score, then document order; for the first SAMPLE_PARTITIONS
    partitions (by task, then model). Raises NotFound for an unknown run."""
    with catalog.session() as s:
        parts = list(s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)
                               .order_by(t.RunPartition.task_key, t.RunPartition.model).limit(SAMPLE_PARTITIONS)))
        names = {p.task_id: cast(t.Task, s.get(t.Task, p.task_id)).name for p in parts}  # foreign key
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for p in parts:
        rows, _ = list_samples(catalog, lake, run_id, task_id=p.task_id, model=p.model, limit=scanned,
                               include_dataset_row=False)
        if rows:
            rows.sort(key=lambda r: (r["error"] is None, min(r["scores"].values(), default=float("inf")),
                                     r["sample_index"]))
            out.setdefault(names[p.task_id], {})[p.model] = rows[:per_partition]
    return out


def write_report(catalog: Catalog, lake: Lake, run_id: str, scheduled: list[dict[str, Any]] | None = None) -> str:
    """Write reports/<run>/report.html (again, with `scheduled` comparisons once a scheduled run's are
    known), register it as a file and list it among the run's artifacts; returns its lake path. Raises
    NotFound for an unknown run."""
    run = get_run(catalog, run_id, partitions=True)
    body = html_page(run, run_comparisons(catalog, lake, run_id), scheduled, report_samples(catalog, lake, run_id))
    stored = lake.write_bytes(f"reports/{run_id}/report.html", body.encode())
    with catalog.session() as s:
        file_id = register_file(s, "run_report", stored)
        row = s.get(t.Run, run_id)
        assert row is not None and file_id is not None  # get_run found the run above; `stored` is a file
        if file_id not in (row.artifact_file_ids or []):
            row.artifact_file_ids = [*(row.artifact_file_ids or []), file_id]
    return stored.path
