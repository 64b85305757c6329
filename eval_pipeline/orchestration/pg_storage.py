"""dagster-postgres's run, event log and schedule storage, on one pooled SQLAlchemy engine per process and
database instead of a new connection per query.

dagster-postgres opens its engines with NullPool: every query is a new PostgreSQL connection, and so a new
server process (5.7 ms of the server's CPU each on this machine, PostgreSQL 15's default settings). A
deployed eval run opens them by the ten thousand: 51,947 in bench/scale's full run (52 per partition), some
300 CPU seconds of the server's on a two-core machine. PgBouncer is the usual cure, but it refuses to run
as root, which is how these machines (and many containers) run; SQLAlchemy's QueuePool does the same job
inside each process.

The engine is shared by every DagsterInstance of a process (a Celery task builds one per step), so the
connections a process holds stay bounded (POOL_SIZE idle, POOL_SIZE + MAX_OVERFLOW at once). A forked child
makes its own engine for the storages it builds, and drops (without closing) the pooled connections of an
engine it inherited, as SQLAlchemy prescribes: a pooled connection must never cross a fork. Connections
are checked before use (pool_pre_ping), so a PostgreSQL restart costs a reconnect, not a failed step. The
stack's dagster.yaml names these classes (deploy/dagster.yaml); the config is dagster-postgres's own.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy
from dagster._serdes import ConfigurableClassData
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

POOL_SIZE = 2
MAX_OVERFLOW = 6
RECYCLE_SECONDS = 3600

_lock = threading.Lock()
_engines: dict[tuple[int, str], sqlalchemy.engine.Engine] = {}


def shared_engine(postgres_url: str, token_provider: Any = None) -> sqlalchemy.engine.Engine:
    """This process's pooled engine for `postgres_url` (autocommit, as dagster-postgres's own)."""
    key = (os.getpid(), postgres_url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = create_pg_engine(
                postgres_url, token_provider, isolation_level="AUTOCOMMIT", pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW, pool_recycle=RECYCLE_SECONDS, pool_pre_ping=True)
        return engine


def _after_fork_in_child() -> None:
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _arguments(inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> dict[str, Any]:
    return {"inst_data": inst_data, "postgres_url": pg_url_from_config(config_value),
            "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
            "token_provider": get_token_provider_from_config(config_value)}


class _Pooled:
    """Swaps a dagster-postgres storage's NullPool engine for the process's pooled one."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider: Any = None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)  # type: ignore[call-arg]
        self._engine = shared_engine(postgres_url, token_provider)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> Any:
        """From dagster-postgres's config (postgres_url or postgres_db, should_autocreate_tables)."""
        return cls(**_arguments(inst_data, config_value))


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    """PostgresRunStorage on the process's pooled engine."""


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    """PostgresEventLogStorage on the process's pooled engine, remembering the tables it has found."""

    def has_table(self, table_name: str) -> bool:
        """dagster-postgres's answer, kept once yes: Dagster asks before every asset check event it stores
        (`supports_asset_checks`) and every dynamic partition lookup, each a PostgreSQL catalog query, and a
        table of the instance is never dropped under a running process."""
        key = (self.postgres_url, table_name)
        if key in _tables_found:
            return True
        found = super().has_table(table_name)
        if found:
            _tables_found.add(key)
        return found


_tables_found: set[tuple[str, str]] = set()


class PooledPostgresScheduleStorage(_Pooled, PostgresScheduleStorage):
    """PostgresScheduleStorage on the process's pooled engine."""
