"""The request ledger (诉求台账): requests, their append-only history, per-park categories.

Only creates tables.  ``request_events`` gets the same UPDATE/DELETE-refusing
triggers as ``hazard_events`` on both backends.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_STATUSES = "('accepted', 'assigned', 'in_progress', 'resolved', 'followed_up')"
_SOURCES = "('visit', 'phone', 'walk_in', 'platform')"
_SATISFACTION = "('satisfied', 'basically_satisfied', 'unsatisfied')"


def _fk(table, column, target):
    return sa.ForeignKey(f"{target}.id", ondelete="RESTRICT", name=f"fk_{table}_{column}_{target}")


def upgrade():
    """Create ``service_requests``, ``request_events`` (append-only), ``request_categories``."""
    table = "service_requests"
    op.create_table(
        table,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("park_id", sa.Integer, _fk(table, "park_id", "parks"), nullable=False),
        sa.Column("enterprise_id", sa.Integer, _fk(table, "enterprise_id", "enterprises"),
                  nullable=False),
        sa.Column("grid_id", sa.Integer, _fk(table, "grid_id", "grids")),
        sa.Column("visit_id", sa.Integer, _fk(table, "visit_id", "visits")),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("received_date", sa.Date, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("department", sa.String(200)),
        sa.Column("deadline", sa.Date),
        sa.Column("responsible", sa.String(100)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolution", sa.Text, nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("satisfaction", sa.String(24)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.CheckConstraint(f"status IN {_STATUSES}", name="ck_service_requests_status_known"),
        sa.CheckConstraint(f"source IN {_SOURCES}", name="ck_service_requests_source_known"),
        sa.CheckConstraint(f"satisfaction IS NULL OR satisfaction IN {_SATISFACTION}",
                           name="ck_service_requests_satisfaction_known"),
        sa.UniqueConstraint("park_id", "code", name="uq_service_requests_park_id_code"),
    )
    for column in ("park_id", "enterprise_id", "grid_id", "visit_id"):
        op.create_index(f"ix_service_requests_{column}", table, [column])
    op.create_table(
        "request_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, _fk("request_events", "request_id",
                                                "service_requests"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("satisfaction", sa.String(24)),
    )
    op.create_index("ix_request_events_request_id", "request_events", ["request_id"])
    op.create_table(
        "request_categories",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("park_id", sa.Integer, _fk("request_categories", "park_id", "parks"),
                  nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("park_id", "name", name="uq_request_categories_park_id_name"),
    )
    op.create_index("ix_request_categories_park_id", "request_categories", ["park_id"])
    # Append-only, as hazard_events (gridmap_append_only() comes with the first migration).
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER request_events_no_{action.lower()} BEFORE {action} ON "
                       "request_events BEGIN SELECT RAISE(ABORT, 'request_events is "
                       "append-only'); END")
    else:
        op.execute("CREATE TRIGGER request_events_append_only BEFORE UPDATE OR DELETE ON "
                   "request_events FOR EACH ROW EXECUTE FUNCTION gridmap_append_only()")


def downgrade():
    """Drop the request ledger (only for throwaway databases)."""
    for table in ("request_categories", "request_events", "service_requests"):
        op.drop_table(table)
