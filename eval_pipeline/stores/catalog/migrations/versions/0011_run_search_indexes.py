"""A DescribeEvalTasks keyFilter (LIKE '%…%' on the runs' search text and model list) without reading
every run of the org. PostgreSQL: trigram indexes (skipped, the plain scan kept, where the pg_trgm
extension is not available or may not be created). SQLite: an FTS5 table with the trigram tokenizer
(`eval_runs_search`, kept by triggers) gives the candidate runs of a filter of 3 or more characters;
the listing index also holds both columns, so shorter filters (or a build without FTS5) scan the
index only. A later batch migration of eval_runs recreates the table and so drops these triggers: it
must create them again (tests/test_api_qianfan.py checks the search follows inserts, renames, deletes).

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
        _sqlite_trigram_search(bind)
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


SQLITE_TRIGGERS = [
    """CREATE TRIGGER eval_runs_search_insert AFTER INSERT ON eval_runs BEGIN
         INSERT INTO eval_runs_search (id, search_text, model_list) VALUES (new.id, new.search_text, new.model_list);
       END""",
    """CREATE TRIGGER eval_runs_search_delete AFTER DELETE ON eval_runs BEGIN
         DELETE FROM eval_runs_search WHERE id = old.id;
       END""",
    """CREATE TRIGGER eval_runs_search_update AFTER UPDATE OF search_text, model_list ON eval_runs BEGIN
         DELETE FROM eval_runs_search WHERE id = old.id;
         INSERT INTO eval_runs_search (id, search_text, model_list) VALUES (new.id, new.search_text, new.model_list);
       END""",
]


def _sqlite_trigram_search(bind) -> None:
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE VIRTUAL TABLE eval_runs_search USING fts5("
                                 "id UNINDEXED, search_text, model_list, tokenize='trigram')"))
    except sa.exc.OperationalError:  # an SQLite built without FTS5: the index scan stays
        return
    for trigger in SQLITE_TRIGGERS:
        bind.execute(sa.text(trigger))
    bind.execute(sa.text("INSERT INTO eval_runs_search (id, search_text, model_list) "
                         "SELECT id, search_text, model_list FROM eval_runs"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS eval_runs_search_{name}")
        op.execute("DROP TABLE IF EXISTS eval_runs_search")
        op.drop_index("ix_eval_runs_org_type_search", "eval_runs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_eval_runs_models_trgm")
        op.execute("DROP INDEX IF EXISTS ix_eval_runs_search_trgm")
