"""Alembic environment: runs on the connection the Catalog hands over (or on sqlalchemy.url)."""
from alembic import context
from sqlalchemy import create_engine

from eval_pipeline.stores.catalog.tables import Base

# Our own version table: Dagster's storage also uses Alembic and may share the database.
VERSION_TABLE = "eval_pipeline_alembic_version"
config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True,
                      version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as conn:
        _run(conn)
        conn.commit()
