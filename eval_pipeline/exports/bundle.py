"""The rows and files of an export bundle, written into a local staging folder (format `lm-eval`:
lm_eval_results.py writes lm-eval's own files instead; the manifest is the same).

One sample row per (model, task, doc): `prompt` is the context the model was given, `prediction` its
answer (the generated text; for multiple choice the choice with the highest loglikelihood, as acc
scores it), `completion` the expected answer (the gold choice's text for multiple choice), `metrics`
the sample's scores as {"metric,filter": score}, `system` the run's system prompt (`instructions`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from eval_pipeline.exports.lm_eval_results import write_lm_eval
from eval_pipeline.grading.generated_docs import generation_docs
from eval_pipeline.grading.grade_files import doc_scores
from eval_pipeline.results.comparisons import run_comparisons
from eval_pipeline.runs import run_object
from eval_pipeline.runs.records import RunObject
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.lake import Lake

FORMAT_VERSION = 1
COLUMN_TYPES = {"prompt": pa.string(), "prediction": pa.string(), "completion": pa.string(),
                "metrics": pa.map_(pa.string(), pa.float64()), "system": pa.string()}


def samples_schema(content: list[str]) -> pa.Schema:
    """The samples files' Arrow schema: model, task, doc_id, then the columns of `content` in its order
    (names not in COLUMN_TYPES are left out)."""
    return pa.schema([("model", pa.string()), ("task", pa.string()), ("doc_id", pa.int64()),
                      *[(c, COLUMN_TYPES[c]) for c in content if c in COLUMN_TYPES]])


def _partition_rows(lake: Lake, catalog: Catalog, run: t.Run, part: t.RunPartition, task_name: str,
                    system: str | None) -> list[dict[str, Any]]:
    scores = doc_scores(lake, run, part.model_key, part.task_key)
    return [{"model": part.model, "task": task_name, "doc_id": d.doc_id, "prompt": d.prompt,
             "prediction": d.prediction, "completion": d.reference, "metrics": scores.get(d.doc_id, {}),
             "system": system}
            for d in generation_docs(catalog, lake, run.id, part.model, part.task_id)]


def _file_entry(path: Path, rows: int | None) -> dict[str, Any]:
    data = path.read_bytes()
    return {"name": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "rows": rows}


def _run_spec(catalog: Catalog, run_id: str) -> RunObject:
    with catalog.session() as s:
        return run_object(s, cast(t.Run, s.get(t.Run, run_id)))  # an export's run_id is a foreign key of eval_runs


def write_manifest(folder: Path, export_id: str, fmt: str, content: list[str], columns: list[str],
                   run_spec: RunObject, files: list[dict[str, Any]], **extra: Any) -> None:
    """`manifest.json`: the commit mark of a bundle, listing every other file with its sha256, bytes and rows.

    `run_spec` is the run's MKA1 `eval.run` object, `files` the entries {name, sha256, bytes, rows}; `extra`
    adds top-level keys (`lm_eval`: the lm-eval layout summary). Keys sorted, indent 2, `created_at` Unix seconds.
    """
    manifest = {"object": "eval.export.manifest", "format_version": FORMAT_VERSION, "format": fmt,
                "export_id": export_id, "created_at": now(), "content": content, "columns": columns,
                "suite": {"id": run_spec["suite_id"], "version": run_spec["suite_version"]},
                "models": run_spec["models"], "run": run_spec, "files": files, **extra}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False))


def write_bundle(catalog: Catalog, lake: Lake, run_id: str, export_id: str, content: list[str],
                 folder: Path, fmt: str = "bundle") -> list[dict[str, Any]]:
    """Write the bundle's files into `folder`, manifest.json included; returns the data files' entries
    ({name, sha256, bytes, rows}; manifest.json not among them). `fmt` is "bundle" (samples.parquet,
    samples.jsonl and, with "metrics" in `content`, metrics.json) or "lm-eval" (`content` unused)."""
    if fmt == "lm-eval":
        files, layout = write_lm_eval(catalog, lake, run_id, folder)
        write_manifest(folder, export_id, fmt, [], [], _run_spec(catalog, run_id), files, lm_eval=layout)
        return files
    schema = samples_schema(content)
    run_spec = _run_spec(catalog, run_id)
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        assert run is not None  # an export's run_id is a foreign key of eval_runs (deleted with its run)
        parts = list(s.scalars(select(t.RunPartition).where(t.RunPartition.run_id == run_id)
                               .order_by(t.RunPartition.model, t.RunPartition.task_key)))
        work = [(part, cast(t.Task, s.get(t.Task, part.task_id)).name) for part in parts]  # task_id: a foreign key
        for part in parts:
            s.expunge(part)
        s.expunge(run)
    system = (run.generation or {}).get("instructions")
    n = 0
    with pq.ParquetWriter(folder / "samples.parquet", schema) as parquet, \
            open(folder / "samples.jsonl", "w", encoding="utf-8") as jsonl:
        for part, task_name in work:  # one partition in memory at a time
            rows = [{k: r[k] for k in schema.names} for r in _partition_rows(lake, catalog, run, part, task_name,
                                                                               system)]
            parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
            for r in rows:
                jsonl.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += len(rows)
    files = [_file_entry(folder / "samples.parquet", n), _file_entry(folder / "samples.jsonl", n)]
    if "metrics" in content:
        (folder / "metrics.json").write_text(json.dumps(
            {"run_id": run_id, "metrics": run_spec["metrics"], "comparisons": run_comparisons(catalog, lake, run_id)},
            indent=2, sort_keys=True, ensure_ascii=False))
        files.append(_file_entry(folder / "metrics.json", None))
    write_manifest(folder, export_id, fmt, content, schema.names, run_spec, files)
    return files
