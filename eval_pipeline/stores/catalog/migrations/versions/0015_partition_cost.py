"""run partitions record what generating them cost: engine busy seconds, GPU-seconds (busy seconds x the
GPUs the engine held) and wall seconds, summed over the partition's executions

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = ("engine_seconds", "gpu_seconds", "wall_seconds")


def upgrade() -> None:
    with op.batch_alter_table("eval_run_partitions") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("eval_run_partitions") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
