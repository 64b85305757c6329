"""The catalog's schema and constraints, on SQLite and on PostgreSQL."""
import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from eval_pipeline import ids
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now


def _suite(s, name="s"):
    suite = t.Suite(id=ids.new_id("suite"), name=name, description=None, metadata_={}, created_at=now(),
                    updated_at=now())
    s.add(suite)
    s.flush()
    return suite


def test_migrations_create_every_table_and_are_idempotent(catalog, request):
    assert catalog.engine.dialect.name == request.node.callspec.params["catalog"]  # both really run
    catalog.migrate()  # a second upgrade is a no-op
    names = set(inspect(catalog.engine).get_table_names())
    assert {"suites", "suite_versions", "suite_version_tasks", "tasks", "task_versions", "imports",
            "historical_runs", "historical_metrics", "files", "eval_pipeline_alembic_version"} <= names


def test_suite_versions_are_numbered_once_per_suite(catalog):
    with catalog.session() as s:
        suite = _suite(s)
        s.add(t.SuiteVersion(id=ids.new_id("suite_version"), suite_id=suite.id, version=1, created_at=now()))
    with pytest.raises(IntegrityError):
        with catalog.session() as s:
            s.add(t.SuiteVersion(id=ids.new_id("suite_version"), suite_id=suite.id, version=1,
                                 created_at=now()))
    with catalog.session() as s:
        assert s.scalars(select(t.SuiteVersion.version)).all() == [1]


def test_suite_and_task_names_are_unique(catalog):
    with catalog.session() as s:
        _suite(s, "same")
    with pytest.raises(IntegrityError):
        with catalog.session() as s:
            _suite(s, "same")


def test_json_columns_round_trip(catalog):
    spec = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
    with catalog.session() as s:
        s.add(t.Task(id="eval_task_x", name="arc_easy", slug="arc_easy", type="multiple_choice",
                     eval_type="auto", eval_mode="rule", request_kind="loglikelihood", metric_spec=spec,
                     filter_spec=[{"name": "none"}], generation_defaults={"until": ["\n"]}, current_version=1,
                     system_tags=["lm-eval"], user_tags=[], created_at=now(), updated_at=now()))
    with catalog.session() as s:
        task = s.get(t.Task, "eval_task_x")
        assert task.metric_spec == spec and task.generation_defaults == {"until": ["\n"]}


def test_a_failed_transaction_writes_nothing(catalog):
    with pytest.raises(RuntimeError):
        with catalog.session() as s:
            _suite(s, "doomed")
            raise RuntimeError("crash mid-transaction")
    with catalog.session() as s:
        assert s.scalar(select(t.Suite).where(t.Suite.name == "doomed")) is None
