"""suite names are unique per org (not across orgs); suites may pin an active version other than the
latest; suite versions keep their metadata and author (suites created from a manifest over the API);
runs count how often they were queued (the sensor's run keys must change when a run is queued again)

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# SQLite reflects the unnamed unique constraint of 0001 under this name; PostgreSQL named it itself.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _swap_unique(drop: tuple[str, list[str]], create: tuple[str, list[str]]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("suites", naming_convention=SQLITE_NAMES) as batch:
            batch.drop_constraint(drop[0], type_="unique")
            batch.create_unique_constraint(create[0], create[1])
    else:
        op.drop_constraint(drop[0], "suites", type_="unique")
        op.create_unique_constraint(create[0], "suites", create[1])


def upgrade() -> None:
    old = "uq_suites_name" if op.get_bind().dialect.name == "sqlite" else "suites_name_key"
    _swap_unique((old, ["name"]), ("uq_suites_org_name", ["org_id", "name"]))
    with op.batch_alter_table("suites") as batch:
        batch.add_column(sa.Column("active_version", sa.Integer()))
    with op.batch_alter_table("suite_versions") as batch:
        batch.add_column(sa.Column("metadata", sa.JSON()))
        batch.add_column(sa.Column("created_by", sa.String(255)))
    with op.batch_alter_table("eval_runs") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("eval_runs") as batch:
        batch.drop_column("attempt")
    with op.batch_alter_table("suite_versions") as batch:
        batch.drop_column("created_by")
        batch.drop_column("metadata")
    with op.batch_alter_table("suites") as batch:
        batch.drop_column("active_version")
    new = "suites_name_key" if op.get_bind().dialect.name != "sqlite" else "uq_suites_name"
    _swap_unique(("uq_suites_org_name", ["org_id", "name"]), (new, ["name"]))
