"""Reading imported history back: the rows the checks validate and the tables users read."""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
from sqlalchemy import select

from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake
from eval_pipeline.suites.versions import latest_version_row


def latest_import_id(catalog: Catalog) -> str | None:
    """The id of the most recent import; None when there was none."""
    with catalog.session() as s:
        return s.scalar(select(t.Import.id).order_by(t.Import.created_at.desc(), t.Import.id).limit(1))


def runs_of_import(catalog: Catalog, import_id: str) -> list[tuple[str, str | None]]:
    """[(historical run id, samples file path)] of the runs an import brought in."""
    with catalog.session() as s:
        return list(s.execute(select(t.HistoricalRun.id, t.File.path)
                              .outerjoin(t.File, t.File.id == t.HistoricalRun.samples_file_id)
                              .where(t.HistoricalRun.import_id == import_id)).all())


def samples_frame(catalog: Catalog, lake: Lake, import_id: str) -> pd.DataFrame:
    """Every imported sample row of an import: run_id, task, doc_id, filter, target (JSON), score_names,
    score_values (the per-sample numeric metrics); empty (same columns) when it brought no samples."""
    columns = ["task", "doc_id", "filter", "target", "score_names", "score_values"]
    frames = []
    for run_id, path in runs_of_import(catalog, import_id):
        if path:
            table = lake.read_table(path, columns=columns)
            frames.append(table.append_column("run_id", pa.array([run_id] * table.num_rows, pa.string())))
    if not frames:
        return pd.DataFrame({c: [] for c in ["run_id", *columns]})
    return pa.concat_tables(frames).to_pandas()


def metrics_frame(catalog: Catalog, import_id: str | None = None, suite_id: str | None = None
                  ) -> pd.DataFrame:
    """One row per historical metric (model, task, metric, filter, value, stderr, n, recomputed,
    recomputed_matches, is_group), of one import and/or one suite (None: all)."""
    q = (select(t.HistoricalRun.model, t.HistoricalMetric.task_name.label("task"), t.HistoricalMetric.metric,
                t.HistoricalMetric.filter, t.HistoricalMetric.value, t.HistoricalMetric.stderr,
                t.HistoricalMetric.n_samples, t.HistoricalMetric.recomputed,
                t.HistoricalMetric.recomputed_matches, t.HistoricalMetric.is_group)
         .join(t.HistoricalRun, t.HistoricalRun.id == t.HistoricalMetric.run_id)
         .order_by(t.HistoricalMetric.task_name, t.HistoricalRun.model, t.HistoricalMetric.metric,
                   t.HistoricalMetric.filter))
    if import_id:
        q = q.where(t.HistoricalRun.import_id == import_id)
    if suite_id:
        q = q.where(t.HistoricalRun.suite_id == suite_id)
    with catalog.session() as s:
        rows = s.execute(q).all()
    return pd.DataFrame(rows, columns=["model", "task", "metric", "filter", "value", "stderr", "n",
                                       "recomputed", "recomputed_matches", "is_group"])


def suite_inputs_frames(catalog: Catalog, lake: Lake, suite_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per task of the latest version with `has_inputs`, every input row with its task)."""
    with catalog.session() as s:
        latest = latest_version_row(s, suite_id)
        rows = [] if latest is None else s.execute(
            select(t.Task.name, t.File.path)
            .join(t.SuiteVersionTask, t.SuiteVersionTask.task_id == t.Task.id)
            .join(t.TaskVersion, (t.TaskVersion.task_id == t.Task.id)
                  & (t.TaskVersion.version == t.SuiteVersionTask.task_version))
            .outerjoin(t.File, t.File.id == t.TaskVersion.inputs_file_id)
            .where(t.SuiteVersionTask.suite_version_id == latest.id)).all()
    tasks = pd.DataFrame({"task": [r[0] for r in rows], "has_inputs": [r[1] is not None for r in rows]})
    frames = []
    for name, path in rows:
        if path:
            table = lake.read_table(path, columns=["doc_id", "prompt"])
            frames.append(table.append_column("task", pa.array([name] * table.num_rows, pa.string())))
    inputs = (pa.concat_tables(frames).to_pandas() if frames
              else pd.DataFrame({"doc_id": [], "prompt": [], "task": []}))
    return tasks, inputs
