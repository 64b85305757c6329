"""Suites written from a manifest of tasks (create, new version, delete), as MKA1's suite API does.

Every dataset is read and every row rendered before anything is written, so a bad manifest leaves the
catalog as it was. A manifest task is a catalog task named `<org>/<manifest id>`: it belongs to its org,
later manifests of the org reuse it, and a change of its inputs makes a new task version (suite
versions keep pointing at the version they were made with).
"""
from __future__ import annotations

import hashlib
from typing import Any, cast

import orjson
import pyarrow as pa
from sqlalchemy import Table, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from eval_pipeline import ids
from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.files import register_file
from eval_pipeline.stores.lake import Lake, StoredFile
from eval_pipeline.suites.datasets import load_rows
from eval_pipeline.suites.manifest import BuiltTask, build_task, parse_manifest
from eval_pipeline.suites.tasks import INPUTS_SCHEMA
from eval_pipeline.suites.versions import get_suite, get_suite_version, publish_manifest


def _metadata(value: Any, field: str) -> dict[str, str]:
    """`value` as a suite's metadata ({} for None); raises InvalidInput naming `field` unless it maps str to str."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidInput(field, "must map strings to strings")
    return value


def _build(manifest: Any, hub_token: str | None) -> list[BuiltTask]:
    """Every task of the manifest with its dataset (and few-shot dataset) read and rendered; nothing written.

    Raises InvalidInput naming the manifest field, MalformedFile for a bad data file, and the Hub's
    NotFound / SourceAuthError / SourceUnavailable."""
    built = []
    for task in parse_manifest(manifest):
        rows = load_rows(task.dataset, f"{task.field}.dataset", hub_token)
        shots = task.fewshot.get("dataset")
        shot_rows = load_rows(shots, f"{task.field}.fewshot.dataset", hub_token) if shots else None
        built.append(build_task(task, rows, shot_rows))
    return built


def _inputs_table(b: BuiltTask) -> tuple[pa.Table, str]:
    """(the task's INPUTS_SCHEMA table, sha256 hex of its rows: the content key of its inputs version)."""
    columns = list(zip(*b.rows))
    table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, INPUTS_SCHEMA)],
                                 schema=INPUTS_SCHEMA)
    digest = hashlib.sha256()
    for row in b.rows:
        digest.update(orjson.dumps([row[0], row[1], row[2], row[3]]) + row[4] + row[5] + row[6] + b"\n")
    return table, digest.hexdigest()


def _write_inputs(lake: Lake, built: list[BuiltTask], org_id: str) -> list[tuple[BuiltTask, StoredFile, str]]:
    """[(built, stored file, sha256)]; content-addressed paths, so a retried request rewrites the same files."""
    out = []
    for b in built:
        table, sha = _inputs_table(b)
        slug = ids.slugify(f"{org_id}/{b.task.key}")
        out.append((b, lake.write_table(f"task_inputs/{slug}/{sha[:32]}.parquet", table), sha))
    return out


def _upsert_task(s: Session, org_id: str, b: BuiltTask, stored: StoredFile, sha: str) -> tuple[str, int]:
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


def _add_version(s: Session, suite: t.Suite, written: list[tuple[BuiltTask, StoredFile, str]], org_id: str,
                 metadata: dict[str, str], created_by: str | None, make_active: bool) -> t.SuiteVersion:
    """Add the suite's next version over the written tasks (upserting each) and update its active version."""
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


def create_suite(catalog: Catalog, lake: Lake, body: dict[str, Any], *, org_id: str, team_id: str,
                 created_by: str | None = None, hub_token: str | None = None) -> dict[str, Any]:
    """A new suite whose version 1 holds the manifest's tasks (MKA1's create suite); returns the `eval.suite` dict.

    `body` has name, description, metadata and manifest. Raises InvalidInput naming the field, Conflict
    when the org has a suite of that name, MalformedFile / NotFound / SourceAuthError / SourceUnavailable
    from reading the datasets."""
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


def create_suite_version(catalog: Catalog, lake: Lake, suite_id: str, body: dict[str, Any], *, org_id: str,
                         created_by: str | None = None, hub_token: str | None = None) -> dict[str, Any]:
    """The next version of a suite from a manifest; `make_active` (default true) makes runs use it.

    `body` has manifest, metadata and make_active; returns the `eval.suite.version` dict. Raises NotFound
    (suite not in `org_id`), InvalidInput naming the field, and the dataset errors of create_suite."""
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


def delete_suite_records(catalog: Catalog, lake: Lake, suite_id: str) -> None:
    """Delete a suite's catalog rows (versions, imports, historical runs cascade) and the lake files only
    it used: its manifest and the samples files no other suite's import shares. Its runs must be gone
    already (service.suites.delete_suite deletes them first)."""
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
        s.execute(cast(Table, t.File.__table__).delete().where(t.File.id.in_(unused)))
    for rel in [*paths, f"suites/{suite_id}/manifest.json"]:
        if lake.exists(rel):
            lake.fs.rm(f"{lake.root}/{rel}")
