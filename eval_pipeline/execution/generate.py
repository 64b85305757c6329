"""One (model, task) partition of a run: plan its requests, skip the chunks already written, answer the
rest from the cache or the backend, and publish each chunk as one atomic Parquet file.

A re-run after a crash, a kill or a retry finds its finished chunks in the lake and does not redo them:
at most the chunk in flight is generated twice. Between chunks it checks that the run still wants work,
so a cancel stops it after the chunk in flight.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from eval_pipeline import runs
from eval_pipeline.generation.backends import backend_for, engine_gpus, engine_info
from eval_pipeline.generation.cache import cached_outcomes, superseded_outcomes
from eval_pipeline.generation.requests import plan_requests, request_settings, task_repeats
from eval_pipeline.generation.rows import Outcome, build_rows
from eval_pipeline.models.registry import resolve_model
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake


@dataclass
class PartitionReport:
    """What one execution of a partition did: its status, row and chunk counts, and times in seconds."""

    status: str = "done"  # done | cancelled | not_wanted
    rows: int = 0
    generated: int = 0  # answered by the backend in this execution
    cached: int = 0  # answered from the cache in this execution
    failed: int = 0
    empty: int = 0
    chunks_written: int = 0
    chunks_skipped: int = 0
    engine_loaded: bool = False
    engine_loads: int = 0  # engines this process has loaded for the same (eval run, model), this one's included
    seconds: float = 0.0
    generation_seconds: float = 0.0  # time inside the backend only
    gpu_seconds: float = 0.0  # generation_seconds x the GPUs the engine held (generation/backends.engine_gpus)
    input_tokens: int = 0  # of the whole partition, every execution's chunks
    output_tokens: int = 0
    chunk_paths: list[str] = field(default_factory=list)
    engine: dict[str, Any] | None = None  # what answered: backend, resolved dtype, window, tokenizer


# (eval run, model) -> engine loads in this process: a warm worker loads each model once per run
_engine_loads: Counter[tuple[str, str]] = Counter()


def chunk_dir(run_id: str, model_key: str, task_key: str) -> str:
    """The lake folder of a partition's generation chunks (chunk-00000.parquet, ...)."""
    return f"generations/{run_id}/{model_key}/{task_key}"


def _chunk_path(folder: str, index: int) -> str:
    return f"{folder}/chunk-{index:05d}.parquet"


def _chunk_stats(index: int, path: str, table: pa.Table) -> dict[str, Any]:
    errors = table.column("error")
    ok = pc.is_null(errors)
    cached = pc.and_(ok, table.column("cached"))
    return {
        "index": index, "path": path, "rows": table.num_rows,
        "completed": int(pc.sum(pc.cast(ok, "int64")).as_py() or 0),
        "failed": int(table.num_rows - (pc.sum(pc.cast(ok, "int64")).as_py() or 0)),
        "empty": int(pc.sum(pc.cast(pc.and_(ok, pc.and_(pc.equal(table.column("request_kind"), "generate_until"),
                                                         pc.equal(table.column("output_text"), ""))),
                                    "int64")).as_py() or 0),
        "input_tokens": int(pc.sum(table.column("input_tokens")).as_py() or 0),
        "output_tokens": int(pc.sum(table.column("output_tokens")).as_py() or 0),
        "cached_tokens": int(pc.sum(pc.if_else(cached, table.column("input_tokens"), 0)).as_py() or 0),
    }


def generate_partition(catalog: Catalog, lake: Lake, run_id: str, model_name: str, task_id: str, *,
                       dagster_run_id: str | None = None, log: Callable[[str], None] = lambda m: None
                       ) -> PartitionReport:
    """Generate what is missing of one partition; a failure fails the run (with model and task) and
    is raised again for the caller's orchestration to see. `log` gets a line per chunk written.

    Returns the report; status not_wanted when the run takes no more work, cancelled when it stopped between
    chunks. Raises NotFound for an unknown run or partition.
    """
    part = runs.start_partition(catalog, run_id, model_name, task_id, dagster_run_id)
    if part is None:
        return PartitionReport(status="not_wanted")
    try:
        return _generate(catalog, lake, run_id, model_name, task_id, part, log)
    except Exception as e:
        runs.fail_partition(catalog, run_id, model_name, task_id, "generation_failed", f"{type(e).__name__}: {e}")
        raise


def _generate(catalog: Catalog, lake: Lake, run_id: str, model_name: str, task_id: str, part: t.RunPartition,
              log: Callable[[str], None]) -> PartitionReport:
    started = time.perf_counter()
    report = PartitionReport()
    with catalog.session() as s:
        run = s.get(t.Run, run_id)
        task = s.get(t.Task, task_id)
        inputs_path = s.scalar(select(t.File.path).join(t.TaskVersion, t.TaskVersion.inputs_file_id == t.File.id)
                               .where(t.TaskVersion.task_id == task_id,
                                      t.TaskVersion.version == part.task_version))
        # the partition (claimed above) references both; runs are created only for tasks with inputs
        assert run is not None and task is not None and inputs_path is not None
        generation, settings, task_name = dict(run.generation), dict(run.settings), task.name
        repeats = task_repeats(task.grading)
    model = resolve_model(catalog, model_name)
    requests = plan_requests(lake, inputs_path, generation, settings.get("max_samples_per_task"), repeats)
    size = settings["max_workflow_sample_activities"]
    folder = chunk_dir(run_id, part.model_key, part.task_key)
    ident = {"run_id": run_id, "model": model_name, "task_id": task_id, "task": task_name}
    recorded = {c["index"] for c in part.chunks}
    use_cache = generation.get("use_cache", True)
    settings_key = request_settings(generation)
    fingerprint = model.fingerprint
    keys = [r.cache_key(fingerprint, settings_key) for r in requests]
    starts = range(0, len(requests), size)
    missing = {i for i in range(len(starts)) if not lake.exists(_chunk_path(folder, i))}
    wanted = {k for i in missing for k in keys[starts[i]:starts[i] + size]}
    # One pass over earlier runs' chunks for every request still to answer.
    hits = superseded_outcomes(lake, folder, wanted)
    if use_cache and wanted - hits.keys():
        hits |= cached_outcomes(catalog, lake, run_id=run_id, model_fingerprint=fingerprint, task_id=task_id,
                                wanted=wanted - hits.keys())
    lease = None
    for index, start in enumerate(starts):
        path = _chunk_path(folder, index)
        if index not in missing:
            report.chunks_skipped += 1
            if index not in recorded:  # written just before a crash, not yet counted
                runs.record_chunk(catalog, run_id, model_name, task_id,
                                  _chunk_stats(index, path, lake.read_table(path)))
            report.chunk_paths.append(path)
            continue
        if not runs.still_wanted(catalog, run_id):
            report.status = "cancelled"
            break
        chunk, chunk_keys = requests[start:start + size], keys[start:start + size]
        todo = [r for r, k in zip(chunk, chunk_keys) if k not in hits]
        fresh: dict[int, Outcome] = {}
        if todo:
            if lease is None:
                lease = backend_for(model)
                report.engine_loaded = report.engine_loaded or lease.loaded_now
                _engine_loads[(run_id, model_name)] += lease.loaded_now
            t0 = time.perf_counter()
            fresh = dict(zip((r.index for r in todo), lease.backend.generate(todo, generation, settings)))
            report.generation_seconds += time.perf_counter() - t0
        outcomes = [hits[k] if k in hits else fresh[r.index] for r, k in zip(chunk, chunk_keys)]
        table = build_rows(ident, chunk, outcomes, chunk_keys, [k in hits for k in chunk_keys])
        stored = lake.write_table(path, table)
        stats = _chunk_stats(index, path, table) | {"sha256": stored.sha256}
        runs.record_chunk(catalog, run_id, model_name, task_id, stats)
        report.chunks_written += 1
        report.generated += len(todo)
        report.cached += len(chunk) - len(todo)
        report.chunk_paths.append(path)
        log(f"{model_name} / {task_name}: chunk {index} written ({len(chunk)} requests, "
            f"{len(chunk) - len(todo)} from cache)")
    if lease is not None:
        runs.set_partition_engine(catalog, run_id, model_name, task_id, engine_info(lease.backend))
    report.engine = part.engine if lease is None else engine_info(lease.backend)
    report.engine_loads = _engine_loads[(run_id, model_name)]
    chunks = runs.partition_chunks(catalog, run_id, model_name, task_id)
    report.rows = sum(c["rows"] for c in chunks)
    report.failed = sum(c["failed"] for c in chunks)
    report.empty = sum(c["empty"] for c in chunks)
    report.input_tokens = sum(c.get("input_tokens", 0) for c in chunks)
    report.output_tokens = sum(c.get("output_tokens", 0) for c in chunks)
    report.gpu_seconds = report.generation_seconds * (engine_gpus(lease.backend) if lease is not None else 0)
    report.seconds = time.perf_counter() - started
    runs.add_partition_cost(catalog, run_id, model_name, task_id, engine_seconds=report.generation_seconds,
                            gpu_seconds=report.gpu_seconds, wall_seconds=report.seconds)
    runs.finish_partition(catalog, run_id, model_name, task_id,
                          "done" if report.status == "done" else "cancelled")
    return report

