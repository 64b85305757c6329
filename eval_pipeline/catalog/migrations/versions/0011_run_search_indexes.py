"""A DescribeEvalTasks keyFilter (LIKE '%…%' on the runs' search text and model list) without reading
every run of the org. PostgreSQL: trigram indexes (skipped, the plain scan kept, where the pg_trgm
extension is not available or may not be created). SQLite: the listing index also holds both columns,
so the LIKEs are evaluated on the index and only matching runs are read.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.create_index("ix_eval_runs_org_type_search", "eval_runs",
                        ["org_id", "eval_type", "created_ns", "search_text", "model_list"])
        return
    if bind.dialect.name != "postgresql":
        return
    if bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first() is None:
        return
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError:  # no privilege to create it: the listing stays a scan
        return
    op.execute("CREATE INDEX IF NOT EXISTS ix_eval_runs_search_trgm ON eval_runs USING gin (search_text gin_trgm_ops)")
    op.execute("CREATE INDEX IF NOT EXISTS ix_eval_runs_models_trgm ON eval_runs USING gin (model_list gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_eval_runs_org_type_search", "eval_runs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_eval_runs_models_trgm")
        op.execute("DROP INDEX IF EXISTS ix_eval_runs_search_trgm")
