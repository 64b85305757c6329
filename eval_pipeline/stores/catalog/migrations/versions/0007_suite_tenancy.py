"""suites belong to an org and team, and remember who created them

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("suites") as batch:
        batch.add_column(sa.Column("org_id", sa.String(128), nullable=False, server_default="org_default"))
        batch.add_column(sa.Column("team_id", sa.String(128), nullable=False, server_default="team_default"))
        batch.add_column(sa.Column("created_by", sa.String(255)))
        batch.create_index("ix_suites_org_id", ["org_id"])


def downgrade() -> None:
    with op.batch_alter_table("suites") as batch:
        batch.drop_index("ix_suites_org_id")
        batch.drop_column("created_by")
        batch.drop_column("team_id")
        batch.drop_column("org_id")
