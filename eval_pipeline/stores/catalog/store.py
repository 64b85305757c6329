"""Engine, sessions and migrations for the catalog."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS = Path(__file__).parent / "migrations"


def now() -> int:
    """The current Unix time in whole seconds, as the catalog's timestamps are kept."""
    return int(time.time())


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Catalog:
    """The catalog database at SQLAlchemy `url`: its engine, transactions and migrations (SQLite connections get
    foreign keys, WAL and a 30 s busy timeout)."""

    def __init__(self, url: str):
        self.url = url
        # pre-ping: a pooled connection the server dropped (a restart) is replaced, not handed out to fail
        self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._tables: dict[str, bool] = {}

    def migrate(self) -> "Catalog":
        """Bring the schema to the newest Alembic revision (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return self

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with self._sessions() as s, s.begin():
            yield s

    def has_table(self, name: str) -> bool:
        """Whether the schema has `name` (optional tables a migration makes where the database can)."""
        if name not in self._tables:
            self._tables[name] = inspect(self.engine).has_table(name)
        return self._tables[name]

    def dispose(self) -> None:
        """Close the engine's pooled connections."""
        self.engine.dispose()
