"""runs record their eval type and mode (from their tasks, at creation) and a lowercase search text
(name, id) and model list, so a filtered listing is one plain scan of the org's runs

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_runs") as batch:
        batch.add_column(sa.Column("eval_type", sa.String(16), nullable=False, server_default="auto"))
        batch.add_column(sa.Column("eval_mode", sa.String(32), nullable=False, server_default="rule"))
        batch.add_column(sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("model_list", sa.Text(), nullable=False, server_default=""))
        batch.create_index("ix_eval_runs_org_type_created", ["org_id", "eval_type", "created_ns"])


def downgrade() -> None:
    with op.batch_alter_table("eval_runs") as batch:
        batch.drop_index("ix_eval_runs_org_type_created")
        batch.drop_column("model_list")
        batch.drop_column("search_text")
        batch.drop_column("eval_mode")
        batch.drop_column("eval_type")
