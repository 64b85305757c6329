"""model registry, eval runs and their partitions (prefixed: Dagster's own storage has a `runs` table
and may share the database)

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_registry",
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("key", sa.String(128), nullable=False, unique=True),
        sa.Column("backend", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("implicit", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(128), nullable=False),
        sa.Column("team_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("description", sa.Text()),
        sa.Column("suite_id", sa.String(64), sa.ForeignKey("suites.id"), nullable=False, index=True),
        sa.Column("suite_version", sa.Integer(), nullable=False),
        sa.Column("suite_version_id", sa.String(64), sa.ForeignKey("suite_versions.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("task_ids", sa.JSON()),
        sa.Column("judge_model", sa.String(512)),
        sa.Column("embedding_model", sa.String(512)),
        sa.Column("generation", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("request_total", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON()),
        sa.Column("error", sa.JSON()),
        sa.Column("artifact_file_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False, index=True),
        sa.Column("started_at", sa.BigInteger()),
        sa.Column("completed_at", sa.BigInteger()),
        sa.Column("failed_at", sa.BigInteger()),
        sa.Column("cancelled_at", sa.BigInteger()),
    )
    op.create_table(
        "eval_run_partitions",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.String(512), primary_key=True),
        sa.Column("task_id", sa.String(64), sa.ForeignKey("tasks.id"), primary_key=True),
        sa.Column("task_version", sa.Integer(), nullable=False),
        sa.Column("model_key", sa.String(128), nullable=False),
        sa.Column("task_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("planned", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached", sa.Integer(), nullable=False),
        sa.Column("model_fingerprint", sa.String(64), nullable=False, index=True),
        sa.Column("chunks", sa.JSON(), nullable=False),
        sa.Column("dagster_run_id", sa.String(64)),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("eval_run_partitions")
    op.drop_table("eval_runs")
    op.drop_table("model_registry")
