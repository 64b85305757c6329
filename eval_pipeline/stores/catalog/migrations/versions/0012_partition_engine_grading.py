"""run partitions record what ran (the engine's resolved dtype, window and tokenizer) and how their task was
graded (natively, through lm-eval's registry, predict-only, or not gradable with the reason)

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_run_partitions") as batch:
        batch.add_column(sa.Column("engine", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("grading", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_run_partitions") as batch:
        batch.drop_column("grading")
        batch.drop_column("engine")
