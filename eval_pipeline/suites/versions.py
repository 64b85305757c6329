"""Suites and their immutable versions: reading them, and publishing a version manifest to the lake."""
from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from eval_pipeline.errors import NotFound
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake
from eval_pipeline.suites.tasks import task_object

MANIFEST_SCHEMA = "2026-05-27"


def latest_version_row(s: Session, suite_id: str) -> t.SuiteVersion | None:
    """The suite's highest-numbered version; None when it has none (or no such suite)."""
    return s.scalar(select(t.SuiteVersion).where(t.SuiteVersion.suite_id == suite_id)
                    .order_by(t.SuiteVersion.version.desc()).limit(1))


def active_version_row(s: Session, suite: t.Suite) -> t.SuiteVersion | None:
    """The version runs use when they name none: the pinned active one, else the latest."""
    if suite.active_version is None:
        return latest_version_row(s, suite.id)
    return s.scalar(select(t.SuiteVersion).where(t.SuiteVersion.suite_id == suite.id,
                                                 t.SuiteVersion.version == suite.active_version))


def suite_task_pins(catalog: Catalog, suite_id: str) -> dict[str, int]:
    """{task name: task version} of the suite's latest version."""
    with catalog.session() as s:
        latest = latest_version_row(s, suite_id)
        if latest is None:
            return {}
        return dict(s.execute(select(t.Task.name, t.SuiteVersionTask.task_version)
                              .join(t.Task, t.Task.id == t.SuiteVersionTask.task_id)
                              .where(t.SuiteVersionTask.suite_version_id == latest.id)).all())


def suite_object(s: Session, suite: t.Suite) -> dict[str, Any]:
    """The `eval.suite` dict (MKA1's EvalSuite): active and latest version numbers (0 when none), metadata,
    times in epoch seconds."""
    latest = s.scalar(select(func.max(t.SuiteVersion.version)).where(t.SuiteVersion.suite_id == suite.id))
    return {
        "id": suite.id, "object": "eval.suite", "name": suite.name, "description": suite.description,
        "org_id": suite.org_id, "team_id": suite.team_id, "access": "owner",
        "active_version": suite.active_version or latest or 0, "latest_version": latest or 0,
        "metadata": suite.metadata_,
        "created_at": suite.created_at, "updated_at": suite.updated_at,
    }


def version_object(s: Session, sv: t.SuiteVersion) -> dict[str, Any]:
    """The `eval.suite.version` dict: its manifest (each task's `eval.task` dict at the pinned version, with
    its inputs' lake path), the inputs file ids, and its metadata (an import's `import_id` when it has none)."""
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
        "metadata": sv.metadata_ or ({"import_id": sv.import_id} if sv.import_id else {}),
        "created_at": sv.created_at,
    }


def list_suites(catalog: Catalog, *, org_id: str | None = None, created_by: str | None = None,
                after: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """`eval.suite` dicts, oldest first; `after` is the last id of the previous page; `org_id` limits to one
    org, `created_by` to one creator, `limit` (None: all) to a page. Raises NotFound for an unknown `after`."""
    with catalog.session() as s:
        q = select(t.Suite).order_by(t.Suite.created_at, t.Suite.id)
        if org_id is not None:
            q = q.where(t.Suite.org_id == org_id)
        if created_by is not None:
            q = q.where(t.Suite.created_by == created_by)
        if after:
            anchor = _suite(s, after, org_id)
            q = q.where((t.Suite.created_at > anchor.created_at)
                        | ((t.Suite.created_at == anchor.created_at) & (t.Suite.id > anchor.id)))
        return [suite_object(s, suite) for suite in s.scalars(q.limit(limit) if limit else q)]


def _suite(s: Session, suite_id: str, org_id: str | None) -> t.Suite:
    """The suite row; NotFound when it is missing or (with `org_id`) in another org."""
    suite = s.get(t.Suite, suite_id)
    if suite is None or (org_id is not None and suite.org_id != org_id):
        raise NotFound("suite", suite_id)
    return suite


def get_suite(catalog: Catalog, suite_id: str, *, org_id: str | None = None,
              versions: bool = True) -> dict[str, Any]:
    """The `eval.suite` dict, with `versions` (every `eval.suite.version`, oldest first) unless `versions` is
    false. Raises NotFound when the suite is missing or (with `org_id`) in another org."""
    with catalog.session() as s:
        suite = _suite(s, suite_id, org_id)
        if not versions:
            return suite_object(s, suite)
        rows = s.scalars(select(t.SuiteVersion).where(t.SuiteVersion.suite_id == suite_id)
                         .order_by(t.SuiteVersion.version))
        return suite_object(s, suite) | {"versions": [version_object(s, sv) for sv in rows]}


def get_suite_version(catalog: Catalog, suite_id: str, version: int, *,
                      org_id: str | None = None) -> dict[str, Any]:
    """The `eval.suite.version` dict of `version` (1-based); NotFound for the suite (as get_suite) or version."""
    with catalog.session() as s:
        _suite(s, suite_id, org_id)
        sv = s.scalar(select(t.SuiteVersion).where(t.SuiteVersion.suite_id == suite_id,
                                                   t.SuiteVersion.version == version))
        if sv is None:
            raise NotFound("suite version", f"{suite_id} v{version}")
        return version_object(s, sv)


def publish_manifest(catalog: Catalog, lake: Lake, suite_id: str) -> dict[str, Any]:
    """Write the suite's versions and their task inputs to `suites/<id>/manifest.json` (idempotent); returns
    what was written (get_suite's dict). Raises NotFound for an unknown suite."""
    suite = get_suite(catalog, suite_id)
    lake.write_bytes(f"suites/{suite_id}/manifest.json",
                     orjson.dumps(suite, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return suite
