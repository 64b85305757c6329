"""export tasks get a format: `bundle` (the existing samples/metrics bundle) or `lm-eval` (the run as
lm-evaluation-harness 0.4.13's results and samples files)

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.add_column(sa.Column("format", sa.String(16), nullable=False, server_default="bundle"))


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("format")
