"""A throwaway PostgreSQL database for the benchmarks: EVAL_PIPELINE_BENCH_PG (an SQLAlchemy URL to an
admin database), else the server on 127.0.0.1:5432 as user postgres."""
from __future__ import annotations

import os
import uuid
from typing import Callable

import sqlalchemy as sa


def throwaway_database(prefix: str) -> tuple[str, Callable[[], None]]:
    """(URL of a new database named `<prefix>_<random>`, a function that drops it)."""
    admin = os.environ.get("EVAL_PIPELINE_BENCH_PG") or "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(admin).set(database=name).render_as_string(hide_password=False)

    def drop():
        with engine.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
    return url, drop
