"""schedules of eval runs, their ticks (one run per tick at most) and their webhook deliveries, and scheduled runs' outcomes (regressions)

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_schedules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", sa.String(128), nullable=False, index=True),
        sa.Column("team_id", sa.String(128), nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("suite_id", sa.String(64), sa.ForeignKey("suites.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("suite_version", sa.Integer()),
        sa.Column("cron", sa.String(255)),
        sa.Column("interval_seconds", sa.Integer()),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("overlap_policy", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("webhook_url", sa.Text()),
        sa.Column("webhook_secret_encrypted", sa.Text()),
        sa.Column("run", sa.JSON(), nullable=False),
        sa.Column("regression", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON()),
        sa.Column("next_run_at", sa.BigInteger(), index=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False, index=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "eval_schedule_ticks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("schedule_id", sa.String(64), sa.ForeignKey("eval_schedules.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tick_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("eval_runs.id", ondelete="SET NULL"), index=True),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("schedule_id", "kind", "tick_at", name="uq_schedule_ticks_tick"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("schedule_id", sa.String(64), sa.ForeignKey("eval_schedules.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("run_attempt", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.JSON()),
        sa.Column("next_attempt_at", sa.BigInteger(), index=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger()),
        sa.UniqueConstraint("schedule_id", "run_id", "run_attempt", "event_type", name="uq_webhook_event"),
    )
    op.create_table(
        "eval_run_outcomes",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("attempt", sa.Integer(), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("schedule_key", sa.String(255), nullable=False, index=True),
        sa.Column("previous_run_id", sa.String(64)),
        sa.Column("comparisons", sa.Integer(), nullable=False),
        sa.Column("regressions", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
    )
    # a schedule's previous run is found by origin
    op.create_index("ix_eval_runs_origin", "eval_runs", ["origin"])


def downgrade() -> None:
    op.drop_index("ix_eval_runs_origin", "eval_runs")
    op.drop_table("eval_run_outcomes")
    op.drop_table("webhook_deliveries")
    op.drop_table("eval_schedule_ticks")
    op.drop_table("eval_schedules")
