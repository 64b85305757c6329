"""Suites written from a manifest of tasks (create, new version, delete), as MKA1's suite API does.

Every dataset is read and every row rendered before anything is written, so a bad manifest leaves the
catalog as it was. A manifest task is a catalog task named `<org>/<manifest id>`: it belongs to its org,
later manifests of the org reuse it, and a change of its inputs makes a new task version (suite
versions keep pointing at the version they were made with).
"""
from __future__ import annotations

import hashlib

import orjson
import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from eval_pipeline import ids
from eval_pipeline.catalog import Catalog
from eval_pipeline.catalog import tables as t
from eval_pipeline.catalog.store import now
from eval_pipeline.datasets import load_rows
from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.files import register_file
from eval_pipeline.ingest import INPUTS_SCHEMA
from eval_pipeline.lake import Lake
from eval_pipeline.suite_manifest import BuiltTask, build_task, parse_manifest
from eval_pipeline.suites import get_suite, get_suite_version, publish_manifest


def _metadata(value, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidInput(field, "must map strings to strings")
    return value


def _build(manifest, hub_token: str | None) -> list[BuiltTask]:
    built = []
    for task in parse_manifest(manifest):
        rows = load_rows(task.dataset, f"{task.field}.dataset", hub_token)
        shots = task.fewshot.get("dataset")
        shot_rows = load_rows(shots, f"{task.field}.fewshot.dataset", hub_token) if shots else None
        built.append(build_task(task, rows, shot_rows))
    return built


def _inputs_table(b: BuiltTask) -> tuple[pa.Table, str]:
    columns = list(zip(*b.rows))
    table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, INPUTS_SCHEMA)],
                                 schema=INPUTS_SCHEMA)
    digest = hashlib.sha256()
    for row in b.rows:
        digest.update(orjson.dumps([row[0], row[1], row[2], row[3]]) + row[4] + row[5] + row[6] + b"\n")
    return table, digest.hexdigest()


def _write_inputs(lake: Lake, built: list[BuiltTask], org_id: str) -> list[tuple]:
    """[(built, stored file, sha256)]; content-addressed paths, so a retried request rewrites the same files."""
    out = []
    for b in built:
        table, sha = _inputs_table(b)
        slug = ids.slugify(f"{org_id}/{b.task.key}")
        out.append((b, lake.write_table(f"task_inputs/{slug}/{sha[:32]}.parquet", table), sha))
    return out


def _upsert_task(s, org_id: str, b: BuiltTask, stored, sha: str) -> tuple[str, int]:
    """(task id, task version) of a manifest task, adding the task or a version as its inputs change."""
    name = f"{org_id}/{b.task.key}"
    task = s.scalar(select(t.Task).where(t.Task.name == name))
    definition = dict(type=b.type, request_kind=b.request_kind, metric_spec=b.metric_spec, filter_spec=b.filter_spec,
                      grading=b.grading | {"manifest": b.task.spec}, generation_defaults=b.gen_kwargs,
                      eval_mode=b.eval_mode, eval_type="auto", description=b.task.spec.get("name"))
    if task is None:
        task = t.Task(id=ids.new_id("task"), name=name, slug=ids.slugify(name), current_version=0,
                      system_tags=["manifest", f"manifest-type:{b.task.type}"], user_tags=[], created_at=now(),
                      updated_at=now(), **definition)
        s.add(task)
        s.flush()
    else:
        for k, v in definition.items():
            setattr(task, k, v)
        task.updated_at = now()
    current = s.get(t.TaskVersion, (task.id, task.current_version))
    if current is None or current.inputs_sha256 != sha:
        file_id = register_file(s, "task_inputs", stored)
        task.current_version += 1
        s.add(t.TaskVersion(task_id=task.id, version=task.current_version, inputs_file_id=file_id,
                            inputs_sha256=sha, n_docs=len(b.rows), created_at=now()))
        s.flush()
    return task.id, task.current_version


def _add_version(s, suite: t.Suite, written: list[tuple], org_id: str, metadata: dict, created_by: str | None,
                 make_active: bool) -> t.SuiteVersion:
    latest = s.scalar(select(func.max(t.SuiteVersion.version)).where(t.SuiteVersion.suite_id == suite.id)) or 0
    sv = t.SuiteVersion(id=ids.new_id("suite_version"), suite_id=suite.id, version=latest + 1, import_id=None,
                        metadata_=metadata, created_by=created_by, created_at=now())
    s.add(sv)
    s.flush()
    for b, stored, sha in written:
        task_id, version = _upsert_task(s, org_id, b, stored, sha)
        s.add(t.SuiteVersionTask(suite_version_id=sv.id, task_id=task_id, task_version=version))
    if make_active:
        suite.active_version = None if suite.active_version is None else sv.version
    elif suite.active_version is None:
        suite.active_version = latest or None  # keep what runs used so far
    suite.updated_at = now()
    return sv


def create_suite(catalog: Catalog, lake: Lake, body: dict, *, org_id: str, team_id: str,
                 created_by: str | None = None, hub_token: str | None = None) -> dict:
    """A new suite whose version 1 holds the manifest's tasks."""
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise InvalidInput("name", "is required: 1-255 characters")
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 10000):
        raise InvalidInput("description", "must be a string of at most 10000 characters")
    metadata = _metadata(body.get("metadata"), "metadata")
    with catalog.session() as s:
        if s.scalar(select(t.Suite.id).where(t.Suite.org_id == org_id, t.Suite.name == name)):
            raise Conflict(f"a suite named {name!r} exists in this org")
    written = _write_inputs(lake, _build(body.get("manifest"), hub_token), org_id)
    try:
        with catalog.session() as s:
            suite = t.Suite(id=ids.new_id("suite"), name=name, description=description, metadata_=metadata,
                            org_id=org_id, team_id=team_id, created_by=created_by, created_at=now(),
                            updated_at=now())
            s.add(suite)
            s.flush()
            _add_version(s, suite, written, org_id, {}, created_by, make_active=True)
            suite_id = suite.id
    except IntegrityError:  # the same name created concurrently
        raise Conflict(f"a suite named {name!r} exists in this org") from None
    publish_manifest(catalog, lake, suite_id)
    return get_suite(catalog, suite_id, org_id=org_id, versions=False)


def create_suite_version(catalog: Catalog, lake: Lake, suite_id: str, body: dict, *, org_id: str,
                         created_by: str | None = None, hub_token: str | None = None) -> dict:
    """The next version of a suite from a manifest; `make_active` (default true) makes runs use it."""
    get_suite(catalog, suite_id, org_id=org_id, versions=False)  # 404 before any dataset is read
    metadata = _metadata(body.get("metadata"), "metadata")
    make_active = body.get("make_active", True)
    if not isinstance(make_active, bool) and make_active is not None:
        raise InvalidInput("make_active", "must be a boolean")
    written = _write_inputs(lake, _build(body.get("manifest"), hub_token), org_id)
    with catalog.session() as s:
        suite = s.get(t.Suite, suite_id)
        if suite is None:
            raise NotFound("suite", suite_id)
        version = _add_version(s, suite, written, org_id, metadata, created_by, make_active is not False).version
    publish_manifest(catalog, lake, suite_id)
    return get_suite_version(catalog, suite_id, version, org_id=org_id)


def delete_suite(catalog: Catalog, lake: Lake, suite_id: str, *, org_id: str) -> dict:
    """Delete a suite with its versions, imported history and runs; refused while one of its runs works."""
    from eval_pipeline.runs import TERMINAL, delete_run

    get_suite(catalog, suite_id, org_id=org_id, versions=False)  # 404 for another org's
    with catalog.session() as s:
        runs = s.execute(select(t.Run.id, t.Run.status).where(t.Run.suite_id == suite_id)).all()
    busy = [r for r, status in runs if status not in TERMINAL]
    if busy:
        raise Conflict(f"run {busy[0]} of this suite is still working: cancel it first")
    for run_id, _ in runs:
        delete_run(catalog, lake, run_id, org_id=org_id)
    with catalog.session() as s:
        file_ids = set(s.scalars(select(t.HistoricalRun.samples_file_id).where(
            t.HistoricalRun.suite_id == suite_id, t.HistoricalRun.samples_file_id.is_not(None))))
        s.delete(s.get(t.Suite, suite_id))  # versions, imports and historical runs cascade
        s.flush()
        # the same source imported into another suite shares its samples file: keep those
        shared = set(s.scalars(select(t.HistoricalRun.samples_file_id).where(
            t.HistoricalRun.samples_file_id.in_(file_ids))))
        unused = file_ids - shared
        paths = s.scalars(select(t.File.path).where(t.File.id.in_(unused))).all()
        s.execute(t.File.__table__.delete().where(t.File.id.in_(unused)))
    for rel in [*paths, f"suites/{suite_id}/manifest.json"]:
        if lake.exists(rel):
            lake.fs.rm(f"{lake.root}/{rel}")
    return {"id": suite_id, "object": "eval.suite.deleted", "deleted": True, "deleted_runs": len(runs)}
