"""export tasks: a run's samples and metrics bundled to object storage or the lake; model backends
get room for `sentence-transformers`

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("eval_runs.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("storage_type", sa.String(16), nullable=False),
        sa.Column("bucket", sa.String(255)),
        sa.Column("prefix", sa.Text()),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("location", sa.Text()),
        sa.Column("files", sa.JSON()),
        sa.Column("error", sa.JSON()),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False, index=True),
        sa.Column("started_at", sa.BigInteger()),
        sa.Column("finished_at", sa.BigInteger()),
    )


    with op.batch_alter_table("model_registry") as batch:
        batch.alter_column("backend", type_=sa.String(32), existing_type=sa.String(16), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("model_registry") as batch:
        batch.alter_column("backend", type_=sa.String(16), existing_type=sa.String(32), existing_nullable=False)
    op.drop_table("exports")
