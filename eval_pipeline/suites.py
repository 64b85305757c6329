"""Suites and their immutable versions: reading them, and publishing a version manifest to the lake."""
from __future__ import annotations

import orjson
from sqlalchemy import func, select

from eval_pipeline.catalog import Catalog
from eval_pipeline.catalog import tables as t
from eval_pipeline.errors import NotFound
from eval_pipeline.lake import Lake
from eval_pipeline.tasks import task_object

MANIFEST_SCHEMA = "2026-05-27"


def latest_version_row(s, suite_id: str) -> t.SuiteVersion | None:
    return s.scalar(select(t.SuiteVersion).where(t.SuiteVersion.suite_id == suite_id)
                    .order_by(t.SuiteVersion.version.desc()).limit(1))


def suite_task_pins(catalog: Catalog, suite_id: str) -> dict[str, int]:
    """{task name: task version} of the suite's latest version."""
    with catalog.session() as s:
        latest = latest_version_row(s, suite_id)
        if latest is None:
            return {}
        return dict(s.execute(select(t.Task.name, t.SuiteVersionTask.task_version)
                              .join(t.Task, t.Task.id == t.SuiteVersionTask.task_id)
                              .where(t.SuiteVersionTask.suite_version_id == latest.id)).all())


def suite_object(s, suite: t.Suite) -> dict:
    latest = s.scalar(select(func.max(t.SuiteVersion.version)).where(t.SuiteVersion.suite_id == suite.id))
    return {
        "id": suite.id, "object": "eval.suite", "name": suite.name, "description": suite.description,
        "active_version": latest or 0, "latest_version": latest or 0, "metadata": suite.metadata_,
        "created_at": suite.created_at, "updated_at": suite.updated_at,
    }


def version_object(s, sv: t.SuiteVersion) -> dict:
    rows = s.execute(select(t.Task, t.TaskVersion, t.File.path)
                     .join(t.SuiteVersionTask, t.SuiteVersionTask.task_id == t.Task.id)
                     .join(t.TaskVersion, (t.TaskVersion.task_id == t.Task.id)
                           & (t.TaskVersion.version == t.SuiteVersionTask.task_version))
                     .outerjoin(t.File, t.File.id == t.TaskVersion.inputs_file_id)
                     .where(t.SuiteVersionTask.suite_version_id == sv.id)
                     .order_by(t.Task.name)).all()
    tasks = [task_object(task, tv) | {"version": tv.version, "inputs_path": path} for task, tv, path in rows]
    return {
        "id": sv.id, "object": "eval.suite.version", "suite_id": sv.suite_id, "version": sv.version,
        "manifest": {"schema_version": MANIFEST_SCHEMA, "tasks": tasks},
        "dataset_file_ids": [tk["inputs_file_id"] for tk in tasks if tk["inputs_file_id"]],
        "metadata": {"import_id": sv.import_id} if sv.import_id else {}, "created_at": sv.created_at,
    }


def list_suites(catalog: Catalog) -> list[dict]:
    with catalog.session() as s:
        return [suite_object(s, suite) for suite in s.scalars(select(t.Suite).order_by(t.Suite.created_at,
                                                                                         t.Suite.id))]


def get_suite(catalog: Catalog, suite_id: str) -> dict:
    """The suite with every version and its tasks."""
    with catalog.session() as s:
        suite = s.get(t.Suite, suite_id)
        if suite is None:
            raise NotFound("suite", suite_id)
        versions = s.scalars(select(t.SuiteVersion).where(t.SuiteVersion.suite_id == suite_id)
                             .order_by(t.SuiteVersion.version))
        return suite_object(s, suite) | {"versions": [version_object(s, sv) for sv in versions]}


def publish_manifest(catalog: Catalog, lake: Lake, suite_id: str) -> dict:
    """Write the suite's versions and their task inputs to `suites/<id>/manifest.json` (idempotent)."""
    suite = get_suite(catalog, suite_id)
    lake.write_bytes(f"suites/{suite_id}/manifest.json",
                     orjson.dumps(suite, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return suite
