"""API keys (stored hashed, per org); runs record who created them and the caller's idempotency key

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(128), nullable=False, index=True),
        sa.Column("team_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger()),
    )
    with op.batch_alter_table("eval_runs") as batch:
        batch.add_column(sa.Column("created_by", sa.String(255)))
        batch.add_column(sa.Column("idempotency_key", sa.String(255)))
        batch.create_unique_constraint("uq_eval_runs_org_idempotency", ["org_id", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("eval_runs") as batch:
        batch.drop_constraint("uq_eval_runs_org_idempotency", type_="unique")
        batch.drop_column("idempotency_key")
        batch.drop_column("created_by")
    op.drop_table("api_keys")
